// Package alertcat copies ZTF alerts between Kafka topics, Avro container
// files and JSON: the engine of `ztfbroker cat`. Nothing inside the project
// imports it but cmd/ztfbroker.
//
// # Messages
//
// A Kafka message value holds one alert in one of two framings:
//
//	container (ZTF):  "Obj" 0x01 | meta map {avro.schema, avro.codec} | sync[16] | block...
//	                  block = count (long) | size (long) | data[size] | sync[16]
//	Confluent:        0x00 | schema id (4 bytes, big-endian) | record (Avro binary)
//
// Container files are parsed and written by avrofile, which bounds each
// length and inflated block at avrofile.MaxBlockSize. The writer schema is
// read from each message (container) or fetched from a registry's
// /schemas/ids/<id> (Confluent). Anything else is ErrNotAvro.
// Schemas are parsed leniently, and cached, by avrofile (ParseSchema,
// Schemas) because most ZTF schemas before 4.02 carry union defaults that
// strict parsers refuse; so are the --schema files. A container with
// several alerts (or blocks) is split into one alert per message.
//
// # Kafka addresses and topic patterns
//
//	kafka://[group@]host:port[,host:port]/[topic]
//
// The topic is a name; a glob when it holds *, ? or [ (path.Match, as
// authz.public.topics: ztf_2026*_programid1); or, starting with ^, a
// regular expression in Go syntax, unanchored at the end, as librdkafka and
// kcat read a leading ^. A pattern selects every matching topic (and, when
// consuming without --eof, ones created later). A destination takes a
// name, or none (kafka://host:port/): each alert then goes to the topic it
// was read from, so a pattern copies topics under their own names; with
// --create a missing one is made with the broker's defaults.
//
// # Keys, timestamps, headers
//
// A record produced by cat carries, for an alert read from Kafka (directly,
// or from JSON that kept "$kafka"), the key, timestamp and headers it was
// read with, a null key staying null. For an alert read from an Avro file
// the key is its objectId (its candid in decimal when it has none, as the
// packager keys prototype alerts) and the timestamp, by default, the send
// time: the packager's and ZTF's own records carry their produce time, and
// an observation time years old would be refused by a topic's
// message.timestamp.before.max.ms (7 days in ztfbroker) or deleted by the
// next retention check. --timestamp jd stamps every alert that has one with
// candidate.jd, converted as packager.JDTime does (JDTime here), so a copy
// seeks by observation with --start; --timestamp now stamps every record
// with the send time, to replay an old topic into a short-lived one.
//
// # Folders
//
// A destination folder gets one file per alert: <candid>.avro (or .json);
// <topic>-<partition>-<offset> or alert-<n> without a candid. A name is
// never reused, in one run or across runs: the next alert with the same
// candid is <candid>_2.avro, then _3, the rule of the nightly archive
// (archive/doc.go; uniqueName here). When the sources can name several
// topics (a pattern, or more than one kafka:// source), each alert read
// from Kafka goes into a subfolder named after its topic:
// DEST/ztf_20261129_programid1/<candid>.avro.
//
// # JSON
//
// One JSON object per alert, one per line (JSON Lines; a JSON array or
// concatenated objects are read too):
//
//	{"$avro":  {"sync": "<32 hex digits>",
//	            "meta": [["avro.schema", null], ["avro.codec", "null"]],
//	            "schema": "<writer schema text, verbatim>"},
//	 "$kafka": {"topic": ..., "partition": ..., "offset": ..., "timestamp": ...,
//	            "key": "<base64>", "headers": [["name", "<base64>" or null], ...]},
//	 "schemavsn": "4.02", "publisher": ..., "objectId": ..., "candid": ..., ...}
//
// "$" cannot start an Avro name, so the two metadata keys never collide with
// a field. For Confluent-framed alerts "$avro" is {"schema_id": N, "schema":
// ...}. "meta" lists the container's metadata keys in their written order
// (avro.schema's value is "schema"; other values are base64).
//
// Fields follow the schema order. Values: int and long as JSON integers;
// float and double in the shortest form that reads back to the same bits
// (strconv 'g', -1, at 32 or 64 bits), with "NaN", "Infinity", "-Infinity"
// and "NaN(0x7fc00001)" for values JSON has no number for; bytes and fixed
// as base64 or data: URIs (application/gzip for the FITS cutouts); a union
// of null and one type as the bare value or null, as fastavro writes it;
// any other union as {"<branch>": value}, the Avro JSON encoding.
//
// # What round-trips bytewise
//
// Identity is defined on the container file: the 16-byte sync marker is
// random per file, so it travels in "$avro".sync, with the metadata key
// order and the schema text, and JSON -> Avro rebuilds the same header. A
// record is re-encoded with the writer schema (never resolved to another),
// arrays and maps as one block followed by the end marker, as every ZTF
// writer does. So file -> kafka -> json -> avro -> file gives back the same
// bytes for every single-alert sample file of every schema version (tested),
// and a multi-alert file written one alert per block, as the fink sample is,
// comes back whole when its alerts are written to one file. Not preserved: a
// writer's choice of several array blocks or negative block counts, and
// deflate-compressed blocks (re-compressed, same records, other bytes).
package alertcat
