// Package alertindex is the alert portal's index: it follows the alert
// topics (ztf_*) as an ordinary Kafka consumer group with committed
// offsets, and keeps in pebble, for each alert, where it is in the log and a
// summary row of its candidate; the alert itself stays in the log and is
// read back by offset (ReadAlert). So the index works against any Kafka
// cluster, and can be rebuilt from the log (Rebuild).
//
// # Keys
//
// One pebble store, keys by a one-byte prefix. Numbers in keys are
// big-endian so that keys sort as the numbers do: a candid with its sign
// bit flipped (candids of the 2016 prototypes are negative), a Julian date
// as an order-preserving double (sign bit flipped, or every bit for a
// negative value).
//
//	'c' candid(8)                              -> row
//	'o' objectId 0x00 candid(8)                -> (empty)      an object's alerts
//	't' jd(8) candid(8)                        -> row          time order, filters read the row in place
//	's' S2 leaf cell id(8) candid(8)           -> ra(8) dec(8) sky position (little-endian doubles)
//	'p' topic 0x00 partition(4) offset(8)      -> candid(8)    log order: retention and reindex
//	'm' 't' topic                              -> count(8)     alerts indexed per topic (little-endian)
//
// A row (encodeRow) is a version byte (1), then the candid, ra, dec, jd,
// fid, magpsf, sigmapsf, rb, drb, ndethist, programid, partition and offset
// little-endian (floats as IEEE bits, NaN for null), then the objectId and
// isdiffpos each after a length byte, then the topic to the end.
//
// # Invariants
//
// An alert (a candid) is indexed once: every key above for it, or none,
// written in one synced batch. A candid seen again at another place (a
// replay) moves there: its old keys are deleted in the same batch. (Two
// places at once in different partitions are read in no fixed order, so
// which one the index keeps may then differ between a follower and a
// rebuild; ZTF's candids are unique, and a replay is read after the
// original.) The
// consumer commits its offsets only after the batch holding those records
// is synced, so a crash makes it read some records again, which changes
// nothing. An alert leaves the index when its offset falls below its
// partition's log start offset (retention deleted its segment) or its topic
// is gone, checked every Config.RetentionCheck.
//
// The prefixes, the row layout and the order-preserving encodings are part
// of the on-disk format; a change needs a new row version or a reindex.
//
// # The broker's tap
//
// Inside serve the broker hands the follower what it appends to the alert
// topics (Tap): each record's offset and the first bytes of its value,
// copied while the broker decompressed the batch to check it. A partition
// the Tap continues exactly where the index stands is read from it, its
// fetching paused; the group's offsets are committed all the same, so the
// Tap changes nothing of what is indexed or where a restart resumes, only
// what it costs (the index no longer fetches and decompresses tonight's
// alerts a second time). Whatever the Tap does not continue (a restart, a
// follower behind, a buffer full, a prefix too short) is fetched.
//
// # Sky cells
//
// Positions are S2 leaf cells (github.com/golang/geo/s2, RA as longitude,
// Dec as latitude). A cone is covered by at most MaxConeCells cells of any
// level; each is one range scan of leaf ids, and each position found is kept
// when its true separation is within the radius.
package alertindex
