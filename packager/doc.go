// Package packager turns a night's detections into ZTF alerts (schema 4.02:
// the candidate, 30 days of detections and upper limits of its object, forced
// photometry, three cutouts) and produces them to the night's topic on a
// producer it is handed: the embedded broker or any Kafka cluster.
//
// # Messages
//
// Topic ztf_<YYYYMMDD>_programid<N> (UT date of the observation, candidate
// programid), or Config.Topic. Key: objectId (candid for prototype alerts
// without one). Value, per Config.Format, the same for every topic a
// packager writes:
//
//	ocf (default, what ZTF sends; fastavro.reader(io.BytesIO(value)) reads it):
//	+------------+------------------------------+-------+-------+-------+------------+-------+
//	| "Obj" 0x01 | meta: avro.schema (4.02 JSON,| sync  | count | size  | alert      | sync  |
//	|            | ~26 kB), avro.codec "null"   | (16)  | (=1)  |       | record     | (16)  |
//	+------------+------------------------------+-------+-------+-------+------------+-------+
//	confluent (about half the bytes):
//	+------+----------------------------+--------------+
//	| 0x00 | schema id (4, big-endian)  | alert record |   schema: GET /schemas/ids/<id>
//	+------+----------------------------+--------------+
//
// Before a topic's first alert the packager creates it (the cluster's
// partitions and replication factor) stating the format in its config:
// ztf.alert.format=ocf|confluent, and ztf.alert.schema.id=<id> for confluent.
// These keys are ztfbroker's own; a Kafka cluster refuses them
// (INVALID_CONFIG), and the topic is then created without them. A topic that
// exists already is left as it is. Replayed alerts are ocf whatever the Format.
//
// Replayed alerts keep their own writer schema (1.x to 4.02): a file of one
// alert is sent as the bytes it is; a file of several is cut into one-alert
// container files with the file's schema text and the records' own bytes.
// Each goes to the topic of its own night and programid (1, 2 or 3); an
// alert with programid 0, a 2016 prototype, one without a candidate jd, or
// one that does not decode is refused into the reject folder with the
// reason, never sent to the public programid 1 topic.
//
// A new deployment seeds its 30-day histories from earlier alerts
// (`ztfbroker package --seed-history PATH...`, seed.go): each alert's
// candidate, prv_candidates and fp_hists become history rows of its object;
// seeding the same alerts twice adds nothing.
//
// # Ingest layout
//
// A pipeline writes one folder per exposure under the ingest directory; the
// folder name is the exposure id (names sort in exposure order):
//
//	<ingest>/<exposure>/
//	    candidates.jsonl   one detection a line:
//	                       {"objectId": "ZTF24aaabcde", "candidate": {<ztf.alert.candidate fields>}}
//	    limits.jsonl       optional, upper limits of objects not detected:
//	                       {"objectId": ..., "prv_candidate": {<ztf.alert.prv_candidate fields>, "candid": null}}
//	    forced.jsonl       optional, forced photometry:
//	                       {"objectId": ..., "fp_hist": {<ztf.alert.fp_hist fields>}}
//	    cutouts/<candid>_sci.fits.gz    gzipped FITS, one per candidate and kind
//	    cutouts/<candid>_ref.fits.gz
//	    cutouts/<candid>_diff.fits.gz
//	    READY              written last by the pipeline: the folder is complete
//	    DONE               written by the packager once every alert is acknowledged
//
// Field names and types are those of the 4.02 schema (JSON numbers for int,
// long, float, double; null or absent for a null union branch). A candidate
// with a required field missing, a value of the wrong type, an unknown field,
// an out-of-range value (fid, ra, dec, jd, magpsf, ...), or a cutout that is
// missing or not gzipped FITS is refused; the rest of the exposure goes out.
//
// # Rejects
//
//	<rejects>/<exposure>/<candid>.reason  "exposure E candidate C field F: why"
//	<rejects>/<exposure>/<candid>.json    the input line
//	<rejects>/<exposure>/<cutout file>    the candidate's cutouts read so far
//
// Lines that are not JSON use line<N> for the candid; unreadable files use "-".
// Each refusal is counted in ztfbroker_packager_rejected_total{field}.
//
// # History
//
// Per object, in pebble under Config.HistoryDir (key layout in History):
// each detection and upper limit as Avro-encoded ztf.alert.prv_candidate and
// each forced-photometry point as ztf.alert.fp_hist. An alert carries the rows
// of the HistoryDays (30) before its candidate, spliced in as stored; rows
// older than that are pruned once per day of observation time. The store
// survives restarts.
//
// # Metrics
//
// ztfbroker_packager_alerts_total (rate: alerts packaged per second),
// ztfbroker_packager_exposure_latency_seconds (exposure arrival to last
// acknowledgement), ztfbroker_packager_rejected_total,
// ztfbroker_packager_produce_failures_total, ztfbroker_packager_alert_bytes_total.
package packager
