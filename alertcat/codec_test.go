package alertcat

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

// alertsDir is the shared sample alerts, beside the project root (../shared).
const alertsDir = "../../shared/data/ztf/alerts"

func sampleFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(alertsDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".avro") {
			files = append(files, p)
		}
		return err
	})
	if err != nil || len(files) == 0 {
		t.Fatalf("sample alerts under %s: %d files, %v", alertsDir, len(files), err)
	}
	return files
}

// Every sample file, single- or multi-alert, any schema version, goes to
// JSON and back to the same bytes.
func TestJSONRoundTripEverySample(t *testing.T) {
	for _, style := range []BytesStyle{Base64, DataURI} {
		for _, f := range sampleFiles(t) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			c := &Codec{Schemas: avrofile.NewSchemas(0), Bytes: style}
			alerts, err := c.Decode(raw)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			var out []byte
			for i, a := range alerts {
				js, err := c.AppendJSON(nil, a)
				if err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				dec := json.NewDecoder(bytes.NewReader(js))
				dec.UseNumber()
				v, err := readJSON(dec)
				if err != nil {
					t.Fatalf("%s: JSON: %v", f, err)
				}
				b, err := c.FromJSON(v, "")
				if err != nil {
					t.Fatalf("%s: from JSON: %v", f, err)
				}
				if !bytes.Equal(b.Body, a.Body) {
					t.Fatalf("%s alert %d: body differs after JSON", f, i)
				}
				if i == 0 {
					out = avrofile.AppendHeader(nil, b.Header)
				}
				if out, err = appendBlock(out, b.Header, b.Body); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(out, raw) {
				t.Errorf("%s: %d bytes after the round trip, %d before, or content differs", f, len(out), len(raw))
			}
		}
	}
}

// FuzzDecode: outside bytes never panic the decoder, and whatever decodes
// goes to JSON and back to the same record bytes.
func FuzzDecode(f *testing.F) {
	for _, p := range []string{boom402, alertsDir + "/ztf-avro-alert/472263571115115000.avro"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("Obj\x01\x00"))
	f.Add([]byte{0, 0, 0, 0, 1, 2})
	schemas := avrofile.NewSchemas(0)
	f.Fuzz(func(t *testing.T, b []byte) {
		c := &Codec{Schemas: schemas}
		alerts, err := c.Decode(b)
		if err != nil {
			return
		}
		for _, a := range alerts {
			js, err := c.AppendJSON(nil, a)
			if err != nil {
				t.Fatalf("decoded but not to JSON: %v", err)
			}
			dec := json.NewDecoder(bytes.NewReader(js))
			dec.UseNumber()
			v, err := readJSON(dec)
			if err != nil {
				t.Fatalf("invalid JSON: %v\n%.300s", err, js)
			}
			back, err := c.FromJSON(v, "")
			if err != nil {
				t.Fatalf("JSON does not read back: %v", err)
			}
			if !bytes.Equal(back.Body, a.Body) {
				t.Fatal("record bytes differ after JSON")
			}
		}
	})
}
