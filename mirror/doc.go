// Package mirror copies topics from an upstream Kafka cluster (ZTF's, the
// University of Washington's, another ztfbroker, any Kafka) into a
// destination cluster, as MirrorMaker does for ZTF's alert network: the
// engine of `ztfbroker mirror` and of serve's `mirror:` section.
//
// # What is copied
//
// Every topic of the upstream whose name matches the pattern (a name, a
// glob such as ztf_*_programid1, or ^ and a regular expression: alertcat's
// syntax), internal topics excepted, topics created later included: the
// upstream's topic list is read every Config.Refresh. A destination topic
// is created with the upstream's partition count (grown when the upstream
// grows), the upstream topic's own configs (its overrides: cleanup.policy,
// retention.ms, ztf.alert.format; left out, with a warning, when the
// destination refuses them) and message.timestamp.before.max.ms at Kafka's
// own default (no bound), so records older than ztfbroker's 7-day bound are
// taken. Configs changed upstream later are not followed.
// Partition i goes to partition i. Each record keeps its key (null stays
// null), value (a tombstone stays one), timestamp and headers, in order;
// the batches are the mirror's own (uncompressed), not the upstream's.
//
// # Where the position is kept
//
// In the destination itself, so that it is exactly as durable as the copied
// records: every copied record carries one more header,
//
//	ztfbroker-mirror-offset: <upstream offset, decimal ASCII>
//
// and at every start (and restart after a failure) the mirror reads the last
// record of each destination partition and resumes the upstream partition
// after the offset it names. A destination partition that is empty starts
// at Config.Start (earliest: the upstream's log start); one that held
// records but lost them all to its retention starts at the upstream's end,
// with a warning; one whose last record has no such header was written by
// someone else, and the topic is not mirrored (an error says so).
//
// # Exactly once
//
// Records are produced by an idempotent producer, one round at a time: the
// records of one poll of the upstream are produced and every one is
// acknowledged (or refused) before the next poll's are sent. Within a round
// the producer keeps each partition's order, and the destination accepts a
// batch only when its sequence follows the last one it stored, so a refused
// batch stops its partition there: the destination always holds a prefix
// of the upstream partition, gapless. A lost connection or a destination
// restarted (even after SIGKILL) is retried with the same sequences, which
// the destination recognises as duplicates. A refused record ends the
// session: nothing is in flight then, and the next session reads the
// positions again. A mirror killed with a request in flight leaves one
// window: the request may be appended after the new process has read the
// positions, only if the destination takes longer to serve it than the
// mirror takes to start again and ask (a second or more).
package mirror
