"""Decode alert messages with the Apache Avro Python library (python3-avro),
independently of the Go code that wrote them, and validate each against the
ZTF 4.02 schema. Usage:

    check_alerts.py SCHEMA.json ocf FILE...          one container file per message
    check_alerts.py SCHEMA.json confluent URL FILE... 5-byte framed bodies; the
                                                      writer schema is fetched from URL/schemas/ids/<id>

Prints one JSON line per message: objectId, candid, prv_candidates (detections,
upper limits), fp_hists, cutout byte counts. Exits non-zero on any failure.
"""
import io
import json
import struct
import sys
import urllib.request

import avro.io
import avro.schema
from avro.datafile import DataFileReader


def summary(rec):
    prv = rec.get("prv_candidates") or []
    return {
        "objectId": rec["objectId"],
        "candid": rec["candid"],
        "jd": rec["candidate"]["jd"],
        "ndethist": rec["candidate"]["ndethist"],
        "detections": sum(1 for p in prv if p["candid"] is not None),
        "limits": sum(1 for p in prv if p["candid"] is None),
        "prv_jds": sorted(p["jd"] for p in prv),
        "fp_hists": len(rec.get("fp_hists") or []),
        "cutouts": [len(rec[k]["stampData"]) for k in ("cutoutScience", "cutoutTemplate", "cutoutDifference")],
        "gzip": all(rec[k]["stampData"][:2] == b"\x1f\x8b" for k in ("cutoutScience", "cutoutTemplate", "cutoutDifference")),
    }


def main():
    schema = avro.schema.parse(open(sys.argv[1]).read())
    mode = sys.argv[2]
    files = sys.argv[3:]
    writers = {}
    if mode == "confluent":
        url, files = files[0], files[1:]
    for f in files:
        data = open(f, "rb").read()
        if mode == "ocf":
            recs = list(DataFileReader(io.BytesIO(data), avro.io.DatumReader()))
            if len(recs) != 1:
                raise SystemExit("%s: %d records, want 1" % (f, len(recs)))
            rec = recs[0]
        else:
            magic, sid = struct.unpack(">bI", data[:5])
            if magic != 0:
                raise SystemExit("%s: magic byte %d" % (f, magic))
            if sid not in writers:
                body = json.load(urllib.request.urlopen("%s/schemas/ids/%d" % (url, sid)))
                writers[sid] = avro.schema.parse(body["schema"])
            dec = avro.io.BinaryDecoder(io.BytesIO(data[5:]))
            rec = avro.io.DatumReader(writers[sid], schema).read(dec)
        avro.io.validate(schema, rec, raise_on_error=True)
        print(json.dumps(summary(rec)))


if __name__ == "__main__":
    main()
