// Package broker owns the topics and partitions of one ztfbroker node: their
// metadata in pebble and one partition log (package log) each. It implements
// protocol.Backend without importing protocol.
//
// # On disk
//
//	DataDir/
//	  meta/                 pebble: the metadata store
//	  <topic>-<partition>/  one log.Log per partition (segments, indexes)
//
// Metadata keys (part of the on-disk format):
//
//	cluster/id      -> the cluster id (22 characters, base64url), made once
//	topic/<name>    -> JSON topicRecord {"v":1, "id":<32 hex>, "partitions":N,
//	                   "configs":{<topic config>: <value>}, "created":<RFC 3339>}
//	group/, offset/, producer/  reserved for the group coordinator and
//	                   producer ids (issue 4), through Broker.Meta
//
// configs holds only a topic's overrides; everything else follows the broker's
// Config, so changing a broker default changes every topic that did not
// override it (as in Kafka).
//
// # Invariants
//
//   - A topic's metadata is written with pebble.Sync before its logs are
//     opened and before its creation is acknowledged, so an acknowledged
//     record never belongs to a topic that a crash forgets. Deletion removes
//     the metadata (synced) first, then the logs; a crash between leaves
//     folders that Open reports (Orphans) and that a new topic of the same
//     name moves aside rather than adopts.
//   - Produce checks every batch (v2 only, framing, CRC-32C,
//     max.message.bytes, no transactional or control batches) before any is
//     written, writes them under the partition's mutex, then waits for
//     durability once for the last one outside it (group commit).
//   - Batches are stored as sent except partitionLeaderEpoch (set to 0) and
//     baseOffset (set by the log); neither is covered by the CRC.
//   - Published *topic values are immutable; growth publishes a new one that
//     shares the existing partitions.
//
// # Locks
//
// adminMu serializes topic creation, deletion and growth; mu guards the
// topic map and is only held to read or swap entries; partition.mu orders
// writes to one log. Reads (Fetch, ListOffset, Offsets) take no partition
// lock: the log serves them concurrently.
package broker
