// Package log is ztfbroker's partition log: Kafka v2 record batches stored
// verbatim in segment files, with a sparse offset index and a sparse time
// index per segment, group-committed fsyncs, retention, crash recovery of
// the active segment's tail, and every batch's CRC checked in this process
// before it is first served, with a background scrub (scrub.go).
//
// # Files
//
// One folder per partition, `<topic>-<partition>/`, holding for each
// segment three files named by the segment's base offset (the offset of its
// first batch) in 20 decimal digits:
//
//	00000000000000000000.log        record batches, back to back
//	00000000000000000000.index      sparse offset index
//	00000000000000000000.timeindex  sparse time index
//	00000000000000000000.snapshot   producer state below that offset (at most 2 kept)
//	log-start-offset                only after DeleteRecords moved it inside a segment
//	clean-shutdown                  only while the log is closed, after a clean Close
//	clean-offset                    a compacted log's first dirty offset (see Compaction)
//
// Files renamed to `*.deleted` belong to segments retention or the cleaner
// removed and `*.tmp` files to an interrupted rewrite (durable.WriteFile's
// temporary name); Open removes both. `*.cleaned` and `*.swap` files are a
// cleaned segment on its way in (see Compaction); Open finishes or drops
// them before anything else.
//
// # Segment file (.log)
//
// Batches exactly as the producer sent them (Kafka's DefaultRecordBatch,
// magic 2), except baseOffset and partitionLeaderEpoch, which the log
// patches in place: the CRC does not cover them. All integers big-endian.
//
//	+----------------+------------+-------------+-------+---------+
//	| baseOffset  i64| length  i32| leaderEpoch | magic | crc  u32|
//	|  (patched)     | bytes after|  i32 patched| i8 =2 | CRC32C  |
//	+----------------+------------+-------------+-------+---------+
//	  0                8            12            16      17
//	+------------+-----------------+-------------+-------------+-----
//	| attributes | lastOffsetDelta | firstTs i64 | maxTs   i64 | ...
//	|    i16     |      i32        |             |             |
//	+------------+-----------------+-------------+-------------+-----
//	  21           23                27            35
//	 ... producerId i64 (43) | producerEpoch i16 (51) | baseSequence i32 (53)
//	   | records i32 (57) | records (61 ..  12+length)
//	                 CRC32C (Castagnoli) covers [21, 12+length)
//
// The active segment may end in zero bytes, preallocated: under
// Config.PreallocateBytes its file is written with zeros and fsynced ahead
// of the last batch, to a 4096-byte boundary, so that an append's
// fdatasync overwrites blocks instead of journaling a new size (the first
// few hundred KiB after the last batch may be a hole, which reads as
// zeros too). A partition written in large batches, for which zeros are
// not written, may instead have its file extended by a hole of up to 128
// MiB ahead of the last batch, also to a 4096-byte boundary, whose pages
// are read once to bring them into the page cache (warm.go). A batch
// header of zeros ends the log. The file size is then not the log's end:
// roll and Close cut the zeros, so a sealed segment, and the active one
// after a clean Close, ends at its last batch; after a crash recovery
// cuts them (see Recovery).
//
//	+---------+---------+-----+---------+-------------------------------+
//	| batch 0 | batch 1 | ... | batch n | 00 00 00 ... 00 (preallocated)|
//	+---------+---------+-----+---------+-------------------------------+
//	                                    ^ log end     file end, k*4096 ^
//
// # Offset index (.index)
//
// One 8-byte entry per indexed batch: the first batch of the segment and
// then the first batch after every IndexIntervalBytes of log.
//
//	+--------------------+--------------------+
//	| relOffset u32      | position u32       |   relOffset = baseOffset - segment base
//	+--------------------+--------------------+   position  = byte position in .log
//
// # Time index (.timeindex)
//
// One 12-byte entry beside every offset index entry, and in a sealed
// segment one more at the end, the seal entry.
//
//	+-----------------------------+--------------------+
//	| timestamp i64               | relOffset u32      |
//	+-----------------------------+--------------------+
//
// For an indexed batch, timestamp is the largest batch maxTimestamp of the
// segment up to and including that batch (so entries never decrease) and
// relOffset is that batch's last offset: every batch up to it has a max
// timestamp <= timestamp. The seal entry holds the segment's largest max
// timestamp and the last offset of the first batch that carries it, so
// that opening a sealed segment reads one entry.
//
// # Clean-shutdown marker (clean-shutdown)
//
// Kafka's clean-shutdown file, with what Open needs to trust the active
// segment without reading it. Close writes it after the final fsync of the
// active segment and both its indexes (temp file, fsync, rename, fsync the
// directory); Open removes it and fsyncs the directory before the log
// takes a write, so a crash from then on finds no marker. 68 bytes:
//
//	+----------+--------------+--------------+--------------+
//	| base i64 | logBytes i64 | indexBytes   | timeBytes i64|   the active segment and
//	|          |              |          i64 |              |   the sizes of its 3 files
//	+----------+--------------+--------------+--------------+
//	  0          8              16             24
//	+------------+-----------+-----------------+-------------+-----------+
//	| nextOffset | maxTs i64 | maxTsOffset i64 | firstTs i64 | crc32c u32|
//	|        i64 |           |                 |             | of [0,64) |
//	+------------+-----------+-----------------+-------------+-----------+
//	  32           40          48                56            64
//
// The log start offset file (log-start-offset) is 12 bytes: the offset
// i64 and the CRC32C u32 of those 8 bytes. The clean-offset file is 20:
// the first dirty offset i64, the earliest delete horizon i64 (unix ms, 0:
// none) of the tombstones the last clean kept, and the CRC32C u32 of the
// 16 bytes before it.
//
// # Producer state snapshot (.snapshot)
//
// The idempotent producers' last batches as of every batch below the
// offset in the name (Kafka's producer-state snapshot): the log notes each
// batch's producerId, producerEpoch and baseSequence as it is written, so
// that the broker can answer a retry as a duplicate. Written at every roll
// (named by the new segment's base) and at Close (named by the log end):
// temp file, fsync, rename, covered by the roll's or the marker's directory
// fsync. The two newest are kept; retention and DeleteRecords remove those
// below the first segment except the newest, since producer state outlives
// the data (KIP-360).
//
//	+-------------+-----------+-----------+---------+-----------+
//	| version u8=1| offset i64| count u32 | entries | crc32c u32|  CRC of all bytes before it
//	+-------------+-----------+-----------+---------+-----------+
//	entry, by producerId ascending:
//	+---------------+----------+---------------+---------------+
//	| producerId i64| epoch i16| lastWrite i64 | batches u8 <=5|   lastWrite: unix ms of the
//	+---------------+----------+---------------+---------------+   producer's last append
//	then each batch, oldest first:
//	+--------------+-------------+----------------+----------------+
//	| firstSeq i32 | lastSeq i32 | baseOffset i64 | lastOffset i64 |
//	+--------------+-------------+----------------+----------------+
//
// Open loads the newest snapshot whose CRC checks out at or below the
// recovered log end (removing damaged ones and ones past the end) and then
// reads only the batch headers from its offset to the log end, noting each:
// recovery cut the log to its durable tail first, so the state is exactly
// that of the batches stored. Without a snapshot the replay starts at the
// first segment. Replayed batches count as written at Open for expiry.
//
// Entry sizes, field order, the file suffixes and names, the 20-digit
// segment names, the small files' layouts, compaction's empty batch and
// delete horizon, the snapshot layout and the
// 4096-byte boundary of preallocated space are the on-disk format;
// IndexIntervalBytes and PreallocateBytes are not (they only set density
// and how far ahead the zeros run).
//
// # Compaction (compact.go)
//
// A log whose Config.Cleanup includes compact (cleanup.policy=compact) is
// cleaned by Log.Clean, as Kafka's log cleaner does: for every key only the
// record with the highest offset stays, records without a key go, and a
// tombstone (a null value) stays until its delete horizon. Only sealed
// segments are cleaned, never the active one. Clean maps key -> last
// offset over the dirty section (from the offset in clean-offset to the
// first segment it may not clean: the active one, or one holding a batch
// newer than min.compaction.lag.ms), within a byte budget: a section with
// more keys is cleaned in passes, each from the first segment to the end
// of what it mapped. Each pass rewrites those segments in groups of at most
// segment.bytes (and 2^31-1 offsets), each group into one segment named by
// its first base, and then writes clean-offset (durable.WriteFile).
//
// Offsets never change. A batch all of whose records stay is copied as it
// is. A batch some of whose records go is rebuilt from its header: same
// baseOffset, lastOffsetDelta, leader epoch, producer id, epoch and base
// sequence, codec; its records keep their offset deltas (so recordCount
// may be below lastOffsetDelta + 1: offsets inside a batch may skip), its
// records section is compressed again with its codec (snappy in xerial
// framing), maxTimestamp is the largest kept record's (the batch's own
// under LogAppendTime) and the CRC is computed anew. A run of consecutive
// batches none of whose records stay becomes one empty batch (recordCount
// 0, no codec, producer id -1, both timestamps -1) whose baseOffset and lastOffsetDelta span
// the run, so that batches still follow one another without a gap and
// every check of recovery and Verify holds for a compacted log too;
// consumers step over it to its last offset + 1 (KAFKA-5443). An emptied
// batch that is its idempotent producer's newest keeps its own header
// instead (Kafka's RETAIN_EMPTY), so that replaying the segments gives the
// same producer state.
//
// Tombstones follow KIP-534: the clean that first keeps a tombstone sets
// bit 6 of its batch's attributes and puts the delete horizon (the clock
// plus delete.retention.ms) in firstTimestamp, the records' timestamp
// deltas taken against it so that their timestamps do not change; a later
// clean past the horizon removes the tombstone.
//
// A cleaned group goes in so that a crash at any point loses nothing:
//
//  1. write `<base>.log.cleaned`, `.index.cleaned` and `.timeindex.cleaned`
//     and fsync each;
//  2. rename the two index files to `.swap`, then the .log to
//     `<base>.log.swap`, and fsync the folder: the commit;
//  3. rename every file of the group's old segments to `.deleted` (a
//     reader still holding one reads on there) and fsync the folder;
//  4. rename the `.swap` files to their names, the .log last, and fsync.
//
// Open first removes every `.cleaned` file (an uncommitted clean: the old
// segments are whole), then for every `<base>.log.swap` reads it (it was
// fsynced before the commit, so damage there is the disk's and fails
// Open) to find the offset n after its last batch, removes every segment
// file whose base lies in [base, n), and renames the `.swap` files to
// their names; an index `.swap` without its `.log.swap` is removed (the
// index is rebuilt if missing). A crash loses at most the clean. Verify,
// which writes nothing, refuses a folder with a `.log.swap` (open the log
// first); VerifyLive waits for a swap to end and looks again at a folder
// whose sealed segments changed while it read them (a swap, retention, or
// a roll that has not yet created the new segment's indexes).
//
// # Invariants
//
//   - Offsets are contiguous: each batch's baseOffset is its predecessor's
//     last offset + 1, and a segment's base is its predecessor's next
//     offset. Compaction keeps this (it removes records, and batches only
//     into an empty batch spanning their offsets).
//   - A segment with a successor is sealed and complete: roll cuts its
//     preallocated zeros and fsyncs its data, seal entry and indexes
//     before the next segment's file exists. Only the active segment's
//     file may run past its last batch, in zeros.
//   - No byte past the last batch is ever served: reads stop at the
//     high watermark, which never passes the log end.
//   - Under FlushAlways the high watermark never passes fsynced data;
//     under FlushInterval it is the written end and fsyncs run every
//     FlushInterval, on roll and on close.
//   - A failed write or fsync makes the log read-only until reopened; a
//     failed read (a sealed file that cannot be opened) does not.
//   - A name is durable only once the folder holding it is fsynced, so
//     every change of names is followed by a folder fsync before anyone
//     relies on it: Open fsyncs the folder above a partition folder it
//     creates (and above each missing parent it creates), and the
//     partition folder after creating a segment or an index or removing
//     leftovers; roll fsyncs it after creating the next segment; the small
//     files (indexes rebuilt, log-start-offset, clean-shutdown,
//     clean-offset) are written
//     through durable.WriteFile (temp file, fsync, rename, fsync the
//     folder); retention fsyncs it after renaming segments to .deleted;
//     Remove fsyncs the folder above after deleting the partition folder.
//     Removing a .deleted or .tmp file needs none: Open removes them again.
//
// # Open files
//
// The active segment's three files stay open. A sealed segment's are
// opened on first read and closed by a FileCache (Options.FileCache, one
// per process, shared by every partition log), least recently used first,
// once more than its capacity are open: by default a quarter of the soft
// RLIMIT_NOFILE, at least 64. A file is closed only while no call is
// using it (each read pins it); a segment retention removed is read under
// its .deleted name until its last reader is done. A sealed file that
// cannot be opened (EMFILE) fails that read with an *OpenError; it is not
// damage, and the log stays writable.
//
// # Journal (journal.go)
//
// Under FlushAlways, logs that share a Journal (Options.Journal, one per
// data directory) acknowledge batches of up to 256 KiB, written while
// other logs write too, once the journal's ring holds them fsynced: one
// fdatasync for every partition written meanwhile. Their segments are
// fsynced as the ring turns over, and Open replays the journal's records
// of the log into its active segment before the recovery below. The ring's
// byte layout is at the top of journal.go.
//
// # Recovery
//
// Open costs O(segments): a sealed segment's sizes come from stat, and
// each one is checked by the ends of its files only (through the
// FileCache, which closes them again): its index sizes (one time index
// entry more than offset index entries, the seal entry), its last offset
// index entry and the last two time index entries against the batches from
// the last indexed one to the end of the segment. That walk also gives the
// offset after the segment's last batch, which must be the next segment's
// base. Indexes that disagree are rebuilt from the segment.
//
// Offsets that no segment holds are damage, never skipped: a sealed
// segment that is empty, cut short (inside a batch or at a batch
// boundary), or followed by a base past its end (a segment file deleted),
// or an .index or .timeindex whose .log is missing above the first
// segment, fails Open with a *CorruptionError (errMissingOffsets) naming
// the file and the offsets lost, and logged; the damaged files are left
// as found. The broker takes that partition offline and serves the
// others. Below the first segment nothing is a gap: retention and
// DeleteRecords remove the oldest segments (a crash in the middle leaves
// their indexes, which Open removes). A read that finds no batch for an
// offset between the log start offset and the high watermark gets the
// same error, not "out of range".
//
// A sealed segment's indexes are checked in full when first used, once
// per Open: entries strictly increasing in offset and position, time
// index timestamps never decreasing, every entry inside the segment, each
// time index entry naming an offset of the batch beside it; then the
// batches named by the first, middle and last entries and by the seal
// entry are read to see that they are where and what the entries say. An
// index that fails (zeroed bytes read back from a lost page, say) is
// logged by name and rebuilt from the segment before it answers anything.
// Verify reports the same damage and writes nothing.
//
// After a clean Close, the clean-shutdown marker vouches for the active
// segment (Close cut its preallocated zeros first, so logBytes is both
// its file size and its end): if its three files still have the sizes
// the marker records, it is opened from the marker without reading a
// batch, and nothing is truncated. A torn tail can only come from a crash, so after a clean
// close a bad frame is disk damage, left in place and reported.
//
// Without a marker (a crash), or when the files no longer match it (changed
// after the close), the active segment is scanned from its last index
// entry whose batch is intact, with CRC checks; a torn tail is truncated at
// the first bad frame, fsynced, logged and counted. Indexes of the active
// segment are fsynced at least every second, which bounds that scan. When
// the first bad frame is a batch header of zeros and every byte from it
// to the end of a file whose size is a multiple of 4096 is zero, the scan
// has reached preallocated space: it is cut and fsynced too, but nothing
// was torn, so nothing is logged or counted. Any other tail is torn, even
// a torn batch followed by zeros, or zeros followed by bytes of a batch
// whose first page was lost; a zero tail in a file of another size is
// what a crash left after a size was committed before its data, and is
// counted as torn, as before preallocation. Verify accepts preallocated
// zeros at the end of the last segment only.
//
// Damage inside a sealed segment, or anywhere in a cleanly closed active
// one, is found when read or scrubbed and reported as a *CorruptionError
// naming the file and byte position; damaged bytes are never returned as
// data once found. Read checks the CRC of every batch this process has not
// yet checked (after Open, none is); a batch it wrote or already checked
// is served with its framing checked and its CRC not, and the scrub
// (Options.Scrub) checks every batch again in the background, which is
// what finds a byte changed on disk after its check (scrub.go has the
// trade-off). Verify checks every CRC.
package log
