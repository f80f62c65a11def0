// Package archive turns a night's alert topic into the tarball ZTF publishes
// at ztf.uw.edu/alerts/public, and serves the listing.
//
// # Files
//
// One night of one program is one file in the output folder:
//
//	ztf_public_YYYYMMDD.tar.gz        programid 1, topic ztf_YYYYMMDD_programid1
//	ztf_partnership_YYYYMMDD.tar.gz   programid 2, topic ztf_YYYYMMDD_programid2
//
// The file is a single gzip member (RFC 1952) around a POSIX ustar archive:
//
//	+------------------------------------------------------------------+
//	| gzip header: 1f 8b 08 00 | mtime 0 | xfl 0 | os 255              |
//	+------------------------------------------------------------------+
//	| deflate: independent 1 MiB input blocks, each compressed with the |
//	|   previous 32 KiB as dictionary and ended by a sync flush, the    |
//	|   last one by a final block (what pgzip writes)                   |
//	|   +----------------------------------------------------------+   |
//	|   | ustar: <candid>.avro   one per message (see below)        |   |
//	|   |        ...             partition 0 in offset order, then 1 |   |
//	|   |        MD5SUMS         "<md5 hex>  <member name>\n" lines |   |
//	|   |        two zero blocks                                    |   |
//	|   +----------------------------------------------------------+   |
//	+------------------------------------------------------------------+
//	| gzip trailer: CRC-32 and input size mod 2^32, little endian       |
//	+------------------------------------------------------------------+
//
// A member holds the Kafka message value byte for byte when it is a
// single-alert Avro object container file (packager.format: ocf, as ZTF
// sends). A Confluent-framed value (byte 0, 4-byte schema id, Avro body) is
// turned back into the container file the ocf format would have carried:
// the writer schema looked up by id, the null codec, the MD5 of the schema
// text as sync marker, one block holding the body as it is; so the schema
// travels with data at rest whatever the topic's format (candid.go). Its
// name is the alert's top-level candid (read with the writer schema) plus
// ".avro", "n<|candid|>.avro" for a negative candid so that no name starts
// with '-'. A candid already used in this archive gets "_2", "_3", ...
// before ".avro", so every message of the topic is a member and `tar -x`
// never overwrites one with another. A value that is neither (or whose
// schema id is unknown) is kept verbatim as
// "nocandid_<partition>_<offset>.avro" and counted; nothing is dropped.
// Member mtime is the record timestamp, mode 0644, owner 0:0, so the same
// topic always gives the same tar bytes.
//
// # Runs, checkpoints, resume
//
// The range archived is [log start offset, high watermark) of every
// partition, listed once when a run starts. While it runs, hidden files sit
// next to the final name:
//
//	.ztf_public_YYYYMMDD.tar.gz.part    the gzip stream so far (no trailer)
//	.ztf_public_YYYYMMDD.tar.gz.sums    MD5SUMS lines of the members so far
//	.ztf_public_YYYYMMDD.tar.gz.ckpt    JSON checkpoint (see checkpoint)
//	.ztf_public_YYYYMMDD.tar.gz.lock    flock(2)ed by the running process
//
// Every CheckpointBytes of tar input, at a member boundary, the run pads the
// tar entry, sync-flushes the compressor, fsyncs .part and .sums, and
// replaces .ckpt atomically (temp, fsync, rename, fsync dir). The checkpoint
// holds the offset range, the next offset per partition, the lengths of
// .part and .sums, the gzip CRC and size, and the last 32 KiB of input (the
// next block's dictionary). A new run with a valid checkpoint truncates
// .part and .sums to those lengths and carries on; without one it starts
// over. Checkpoints fall at the same input positions in every run, so a run
// that was killed and resumed writes the same bytes as one that was not.
// The end: MD5SUMS member, tar end, final deflate block, trailer, fsync,
// rename to the final name, fsync the folder, then .ckpt and .sums go (the
// empty .lock stays: removing it would race the next run). A reader never
// sees a half file under a final name. Retention deleting messages under a
// run fails it (no reset to the new log start), and a second run of the same
// archive fails with ErrBusy.
//
// Next to each finished archive, ".ztf_public_YYYYMMDD.tar.gz.json" records
// the offset range it holds, so the scheduler can tell an archive that a late
// message made incomplete from one that is complete.
//
// # Topic retention
//
// Once a night is archived, its topic has served its purpose: the scheduler
// deletes ztf_YYYYMMDD_programidN (DeleteTopics, so against any cluster)
// when its tarball was built more than topic.retention.ms ago (7 days, as
// ZTF keeps topics), its manifest is present and every partition still ends
// exactly where the manifest says. A topic with late or replayed messages
// past its archive, or with no manifest, is kept and warned about once.
package archive
