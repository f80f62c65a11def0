// Package filter runs users' filters over the alert stream: each filter is
// a CEL expression over an alert's fields, and the alerts it selects are
// produced to the filter's own topic, filter_<name>, which any Kafka
// client reads. The runner is a Kafka client (franz-go) of the alert
// topics, so it runs inside serve or against any Kafka cluster, and more
// runners in one consumer group share the work.
//
// # The filters topic
//
// Filters are records of one topic (DefaultSpecTopic, one partition,
// compacted), keyed by the filter's name, valued by the Spec as JSON:
//
//	key   "bright"
//	value {"name":"bright","owner":"alice","topics":"ztf_*_programid1",
//	       "expression":"candidate.magpsf < 18.5","format":"alert"}
//
// The latest record of a name wins; one without a value removes the
// filter. What a runner learns of a filter is a record of its own, keyed
// "<name>#state", naming the offset of the spec record it applies to:
//
//	key   "bright#state"
//	value {"of":42,"paused":true,"reason":"paused after 10 errors ..."}
//	value {"of":42,"backfilled":true}
//
// A reader applies it only while the record at that offset is the
// filter's latest, so a runner pausing a filter as its user removes or
// saves it again never brings the old filter back; saving resumes a
// paused filter.
//
// # Expressions
//
// An expression sees the alert's top-level fields as variables (objectId,
// candid, schemavsn, publisher, candidate, prv_candidates, fp_hists,
// cutoutScience, cutoutTemplate, cutoutDifference) and the source topic
// (topic), typed as the packager's 4.02 records, field names as in the
// Avro schema. A null optional field reads as zero; has(candidate.rb)
// tells. Helpers: angdist(ra1, dec1, ra2, dec2) in arcseconds;
// cone(ra, dec, radius_arcsec); ndet() (the candidate and the
// prv_candidates with a candid); days_since_first(); mag_rate() (magpsf
// per day since the latest earlier detection in the same band, NaN when
// none). An expression must type-check to bool and its estimated worst
// case (histories of 2048 rows) must be within the cost limit, or it is
// refused when saved; an evaluation that spends more stops with an error.
// Cutouts are decoded only for expressions that name them.
//
// # A match
//
// The alert record as received: value bytes, key, timestamp and headers
// unchanged, plus three headers naming its source (HeaderSourceTopic,
// HeaderSourcePartition, HeaderSourceOffset, decimal). FormatSummary
// produces a small JSON Summary instead.
//
// # Exactly once, without transactions
//
// Filter topics have one partition. The runner polls at most
// MaxPollRecords alerts, produces their matches with the idempotent
// producer, waits for every acknowledgement, and only then commits the
// alerts' offsets. A crash between the produce and the commit replays those
// alerts; to skip their matches, a runner starting (or handed partitions)
// reads the last RecoveryScanRecords records of each filter topic and
// keeps, per source partition, the greatest source offset there: alerts up
// to it are not evaluated again for that filter. This is exact because one
// producer writes a filter topic's partition in source order and the
// idempotent producer never leaves a gap, so what reached the topic is a
// prefix of what was sent.
//
// # Backfill
//
// A filter saved with "start": "earliest" also gets the matches of every
// alert still retained. Save records its cut-over, the end offset of each
// source partition at that moment ("backfill_until", keyed
// "topic/partition"); the group evaluates the filter only at or above it
// (a topic made later: from its start), and one runner backfills below it:
// the one the group gave partition 0 of the first topic (by name) of the
// cut-over that it still reads, stopping before that partition is taken
// from it. The backfill has its own client and idempotent producer, reads
// each source partition from its earliest retained offset to the cut-over,
// and when done stores the filter again with "backfilled": true. The two
// writers cover disjoint ranges, each in source order, so each is
// recovered on its own: a backfill starts after the greatest source offset
// below the cut-over in the whole filter topic (read all of it, at most
// maxBackfillScan records), and while a backfill is pending the group's
// read-back also reads the whole topic. Saving a filter again with start
// earliest backfills again after the matches already there.
//
// # Access
//
// A filter reads as its owner: a source topic the owner may not read is
// skipped. A filter whose topics glob lies inside the public topics is
// public (its topic readable by anyone) and reads public topics only;
// otherwise its topic is readable by its owner alone.
package filter
