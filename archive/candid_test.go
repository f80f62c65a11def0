package archive

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hamba/avro/v2/ocf"
)

func TestCandidEverySample(t *testing.T) {
	known := map[string]int64{ // from the data README's table
		"2695378462115010012.avro":            2695378462115010012,
		"87704463155000.avro":                 -87704463155000,
		"1726958725155002.avro":               -1726958725155002,
		"2019_01_10_739260766315010006.avro":  739260766315010006,
		"forcedphot_test_1660293514215020000": 1660293514215020000,
	}
	cr := newCandidReader()
	msgs := sampleMessages(t)
	for _, m := range msgs {
		alerts, err := decodeAlerts(m)
		if err != nil || len(alerts) != 1 {
			t.Fatalf("hamba: %d alerts, %v", len(alerts), err)
		}
		got, err := cr.Candid(m)
		if err != nil {
			t.Fatal(err)
		}
		if want := alerts[0]["candid"].(int64); got != want {
			t.Fatalf("candid %d, hamba decodes %d", got, want)
		}
	}
	seen := 0
	for _, f := range sampleFiles(t) {
		want, ok := known[filepath.Base(f)]
		if !ok {
			want, ok = known[filepath.Base(f)[:len(filepath.Base(f))-len(".avro")]]
		}
		if !ok {
			continue
		}
		seen++
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := cr.Candid(b); err != nil || got != want {
			t.Errorf("%s: candid %d, %v; want %d", f, got, err, want)
		}
	}
	if seen != len(known) {
		t.Errorf("checked %d of %d known files", seen, len(known))
	}
	if len(cr.plans) > 20 {
		t.Errorf("%d cached schemas", len(cr.plans))
	}
}

func TestCandidDeflateCodecAndGarbage(t *testing.T) {
	sim := newSimulator(t, 3)
	plain := sim.alert(t, 7)
	// Rewrite the same alert with the deflate codec.
	d, err := ocf.NewDecoder(bytes.NewReader(plain))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	d.HasNext()
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc, err := ocf.NewEncoder(sim.schema, &buf, ocf.WithCodec(ocf.Deflate))
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.Encode(m); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	cr := newCandidReader()
	for name, v := range map[string][]byte{"null": plain, "deflate": buf.Bytes()} {
		if got, err := cr.Candid(v); err != nil || got != sim.candid0+7 {
			t.Errorf("%s codec: %d, %v", name, got, err)
		}
	}
	for name, v := range map[string][]byte{
		"empty":     nil,
		"text":      []byte("not an alert"),
		"truncated": plain[:len(plain)/2],
		"header":    plain[:200],
	} {
		if _, err := cr.Candid(v); !errors.Is(err, ErrNoCandid) {
			t.Errorf("%s: %v, want ErrNoCandid", name, err)
		}
	}
}

func FuzzCandid(f *testing.F) {
	for _, m := range sampleMessages(f)[:6] {
		f.Add(m)
	}
	f.Add([]byte("Obj\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cr := newCandidReader()
		_, err := cr.Candid(b)
		if err != nil && !errors.Is(err, ErrNoCandid) {
			t.Fatalf("error not ErrNoCandid: %v", err)
		}
	})
}
