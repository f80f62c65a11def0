// Package avrofile is the Avro Object Container File format as ZTF ships
// alerts: each Kafka message value, and each .avro file, is one container
// file with its writer schema inside. The package parses and writes headers
// and blocks and steps over values by their writer schema; it never decodes
// a record (packager, archive and alertcat each do that their own way).
//
// # Format
//
// From the Apache Avro specification, section "Object Container Files"
// (https://avro.apache.org/docs/current/specification/#object-container-files):
//
//	+------------+---------------------------------------------+-------------+
//	| "Obj" 0x01 | metadata, an Avro map of bytes:             | sync marker |
//	|  (Magic)   |   avro.schema = writer schema (JSON text)   | (16 bytes,  |
//	|            |   avro.codec  = "null" | "deflate" | ...    |  SyncSize)  |
//	+------------+---------------------------------------------+-------------+
//	| block: count (long) | size (long) | size bytes of records | sync marker |
//	+------------------------------------------------------------------------+
//	| block ...                                                              |
//	+------------------------------------------------------------------------+
//
// A long is a zig-zag varint of at most 10 bytes (Go's binary.AppendVarint
// writes the same bytes); bytes and strings are a long length and the bytes.
// The metadata map is written in blocks: a count of entries, the entries
// (key, value), and a final count of 0. A negative count -n is followed by
// the block's size in bytes and then n entries. Writers put the whole map
// in one block, so AppendHeader does too, and a parsed header encodes back
// to the bytes it came from. The records of a block are the concatenated
// binary encodings of count values of the writer schema, compressed as a
// whole with the codec: "null" is as is, "deflate" is raw RFC 1951 deflate.
//
// # ZTF's files
//
// One alert per file in one block, codec "null" (the cutouts inside are
// already gzipped), metadata holding only avro.schema and avro.codec, in
// either order depending on the producer. A few files hold several alerts
// in several blocks. The schema text is 18-26 kB, a third of a file.
//
// # Writer schemas
//
// Old schemas (before 4.x) declare union defaults that strict Avro parsers
// refuse. Defaults play no part in the binary encoding, so Compile ignores
// them and reads every schema version ZTF has written, and ParseSchema, the
// project's one lenient parser, drops the invalid ones and parses the rest
// with hamba/avro, each schema apart from every other. Schemas caches both
// by schema text, within a bound, so a stream of alerts that each carry
// the same schema parses it once.
//
// # Invariants
//
// Every block ends with the header's sync marker (ErrSyncMarker otherwise).
// A file ends cleanly between blocks; input that stops inside a header or
// a block is ErrTruncated. Magic and SyncSize are part of the format;
// MaxBlockSize is this package's limit on lengths read from a stream and on
// inflated blocks, not the format's.
package avrofile
