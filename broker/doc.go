// Package broker owns the topics and partitions of one ztfbroker node: their
// metadata in pebble and one partition log (package log) each, and the group
// coordinator and producer ids that keep their state beside the topics'. It
// implements protocol.Backend without importing protocol.
//
// # On disk
//
//	DataDir/
//	  .lock                 flock: held by the open broker (holds its pid), shared by verify
//	  meta/                 pebble: the metadata store (Metadata keys, below)
//	  journal/              the logs' shared journal (log/journal.go), under log.journal.bytes >= 0
//	  <topic>-<partition>/  one log.Log per partition (segments, indexes)
//	  <topic>-<partition>.deleted/   a deleted topic's log, until removed
//	  <topic>-<partition>.orphan-<unix ms>/  an empty folder no topic owned, moved aside
//	  meta.damaged-<UTC time>/       a damaged store that RecoverMetadata replaced
//
// A partition folder is one whose name splits as `<topic>-<partition>`
// (ParsePartitionDir) and that holds a segment file; it holds records when
// a segment is not at base 0 or is not empty. Open refuses to start
// (*MetadataError) when the store does not open, or when a folder holding
// records belongs to no topic of the store or to a partition past its
// count: a store that lost topics (a bit flip in pebble's WAL makes it drop
// everything after it) must not be adopted, or the next auto-create would
// restart those offsets at 0. RecoverMetadata (serve --recover-metadata)
// moves the store aside and rebuilds the topics from the folders; groups
// and committed offsets are lost.
//
// A partition whose log fails to open (a damaged log-start-offset file, a
// *log.CorruptionError, EIO) is offline: Open logs the folder and the
// damage, ztfbroker_partitions_offline counts it, it answers
// KAFKA_STORAGE_ERROR (OfflinePartitions lists it for Metadata), and every
// other partition is served.
//
// # Metadata keys
//
// Every key in the metadata store belongs to one of the families below. The
// tables, the encodings and the constants spelling the prefixes
// (keyClusterID and topicKeyPrefix in meta.go; groupKeyPrefix,
// offsetKeyPrefix, producerNextKey and producerSeqPrefix in group.go) are
// part of the on-disk format. testdata/meta.golden is a store holding every
// family; TestMetaGolden rebuilds it and fails on any change, on a key whose
// family no table here names, and on a family missing from the golden store.
//
//	key                                             value
//	cluster/id                                      text: the cluster id
//	topic/<name>                                    JSON topicRecord (meta.go)
//	group/<group>                                   JSON groupRecord (group_persist.go)
//	offset/<group:s><topic:s><partition:i32>        JSON offsetRecord (group_persist.go)
//	quota/<entity>                                  JSON client quotas (quota.go)
//	user/<name>                                     JSON SCRAM credentials (users.go)
//	acl/<type:u8><pattern:u8><resource:s><principal:s><host:s><operation:u8><permission:u8>   empty (acl.go)
//
// Key fields: a name that ends its key (topic/<name>, group/<group>) is its
// bytes as they are; a string s followed by more fields is uvarint(len(s))
// then its bytes, so that names may hold any byte ('/' included) without two
// keys clashing, and the keys of one group form one range; i32 and i64 are
// big endian two's complement, so a topic's keys sort by partition. The
// committed offset of group ztf-archive on partition 1 of topic
// ztf_20180725_programid1 is under
//
//	"offset/" 0b "ztf-archive" 17 "ztf_20180725_programid1" 00 00 00 01
//
// Values: JSON is stored compact, fields in the order shown; a field marked ?
// is left out when null or empty; []byte fields are standard base64; times
// are RFC 3339 with nanoseconds as Go's time.Time marshals them, in the zone
// of the clock that wrote them (created is always UTC). Add fields, never
// rename or retype them. Every write is pebble.Sync (a single Set, or one
// batch committed with pebble.Sync) and finishes before the request that
// caused it, if any, is answered, so an acknowledged change survives SIGKILL
// and power loss.
//
// cluster/id holds the id's bytes: 22 characters of base64url (a random
// UUID, as Kafka makes them), or the configured cluster.id, written once by
// the Open that finds none. A configured id that differs from the stored one
// is used and warned about, never stored.
//
// topic/<name> (topic names are [a-zA-Z0-9._-]):
//
//	{"v":1, "id":<32 hex digits: topic id>, "partitions":N,
//	 "configs"?:{<topic config>:<value as text>}, "created":<time, UTC>}
//
// configs holds only a topic's overrides; everything else follows the
// broker's Config, so changing a broker default changes every topic that did
// not override it (as in Kafka). A record whose v is not 1 fails Open. The
// record is written before the topic's logs are opened, rewritten with the
// new count before CreatePartitions opens new logs (and put back if they
// fail to open), rewritten with the new overrides by IncrementalAlterConfigs
// and AlterConfigs before they are answered and before the logs take them
// (alter_configs.go), and deleted before the logs are removed. Open creates
// __consumer_offsets (1 partition, no overrides, always empty) when it is
// missing, so every store holds topic/__consumer_offsets.
//
// group/<group>, a consumer group as its last rebalance left it:
//
//	{"v":1, "state":"Empty"|"CompletingRebalance"|"Stable",
//	 "protocol_type":<text>, "protocol"?:<text>, "generation":N,
//	 "leader"?:<member id>, "state_since":<time>,
//	 "members"?:[{"id":<member id>, "instance_id"?:<text>,
//	   "client_id":<text>, "client_host":<text>,
//	   "session_timeout_ms":N, "rebalance_timeout_ms":N,
//	   "protocols":[{"name":<text>, "metadata":<base64>}],
//	   "assignment"?:<base64>}]}
//
// It is written when every member has joined (CompletingRebalance), when the
// leader's assignment arrives (Stable), when the last member goes (Empty),
// and when a static member rejoins a Stable group under a new member id.
// DeleteGroups, and the retention check once an Empty group has no offsets
// left, delete the record and the group's offsets (a DeleteRange over
// offset/<group:s>) in one batch. A group that only commits (generation -1,
// no members, as admin tools do) has offsets and no record.
//
// offset/<group:s><topic:s><partition:i32>, a committed offset:
//
//	{"offset":N, "leader_epoch":N, "metadata"?:<text>, "committed":<time>}
//
// leader_epoch is -1 when committed by OffsetCommit before v6; metadata is
// left out only when null. The offsets of one OffsetCommit request are one
// batch; OffsetDelete, offset retention (offsets.retention.minutes) and the
// deletion of a topic delete in one batch per group.
//
// quota/<entity>, a client quota (issue 12) set by AlterClientQuotas: the
// entity is user/<name>, client-id/<name> or user/<name>/client-id/<name>,
// names path-escaped and <default> for a default entity (protocol's
// quota.go spells and reads these keys; the broker stores them as they come):
//
//	{"consumer_byte_rate"?:<bytes/s>, "producer_byte_rate"?:<bytes/s>}
//
// An entity left with no quota is deleted.
//
// user/<name>, a user's SCRAM credentials (issue 12), set by `ztfbroker user`
// or AlterUserScramCredentials: per mechanism the salt, iteration count and
// RFC 5802's StoredKey and ServerKey (byte fields base64, as JSON encodes
// them). The password is never stored; PLAIN logins derive the StoredKey
// from the password given and compare. A user left with no credential is
// deleted.
//
//	{"SCRAM-SHA-256"?:{"salt":<b64>,"iterations":<n>,"stored_key":<b64>,"server_key":<b64>},
//	 "SCRAM-SHA-512"?:{...}}
//
// acl/..., one ACL rule (issue 12) as CreateAcls or `ztfbroker acl add`
// states it; the key is the whole rule and the value is empty. The u8
// fields are Kafka's wire codes (kmsg.ACLResourceType: 2 TOPIC, 3 GROUP, 4
// CLUSTER; pattern 3 LITERAL, 4 PREFIXED; operation 2 ALL .. 12
// IDEMPOTENT_WRITE; permission 2 DENY, 3 ALLOW). The rule for group
// partners to read every ztf_ topic is
//
//	"acl/" 02 04 04 "ztf_" 0e "Group:partners" 01 "*" 03 03
//
// Rules are loaded at start and written with pebble.Sync before CreateAcls
// is answered; a DeleteAcls filter's matches go in one batch.
//
// Producer state (issues 4, 11).
//
//	producer/next                                   8 bytes: the next producer id, int64 big endian
//
// producer/next is absent until the first InitProducerId (the first id is
// 1); id+1 is written with pebble.Sync before id is handed out, so that no
// id is handed out twice, even across a crash. Idempotent producers'
// sequences are not in pebble: each partition log keeps them and rebuilds
// them from its own batches at open (package log's doc, the .snapshot
// files), so the log's own fsync covers them. Keys under producer/seq/ from
// earlier versions are deleted at start.
//
// # Invariants
//
//   - A topic's metadata is written with pebble.Sync before its logs are
//     opened and before its creation is acknowledged, so an acknowledged
//     record never belongs to a topic that a crash forgets. Deletion
//     closes the logs and renames their folders `.deleted` (synced), then
//     removes the metadata (synced), then the folders; a crash after the
//     first rename is finished by the next Open, which deletes the topic's
//     record if still there and the folders. So a folder holding records
//     with no record is damage, never a deletion cut short, and a new topic
//     whose name has such a folder adopts it (its offsets go on) rather
//     than moves it aside; an empty one is moved aside.
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
