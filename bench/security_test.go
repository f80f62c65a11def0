package bench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSecurityProtocolAndOpts(t *testing.T) {
	dir := t.TempDir()
	// A self-signed certificate is enough for the pool to accept it.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench-ca"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, caPEM, 0o644)
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("not a certificate\n"), 0o644)

	for _, c := range []struct {
		s     *Security
		proto string
		opts  int
		err   string
	}{
		{nil, "PLAINTEXT", 0, ""},
		{&Security{}, "PLAINTEXT", 0, ""},
		{&Security{CAFile: ca}, "SSL", 1, ""},
		{&Security{User: "u", Password: "p"}, "SASL_PLAINTEXT", 1, ""},
		{&Security{CAFile: ca, User: "u", Password: "p", Mechanism: "SCRAM-SHA-256"}, "SASL_SSL", 2, ""},
		{&Security{User: "u", Mechanism: "PLAIN"}, "SASL_PLAINTEXT", 0, "mechanism"},
		{&Security{CAFile: junk}, "SSL", 0, "no PEM certificate"},
		{&Security{CAFile: filepath.Join(dir, "missing")}, "SSL", 0, "no such file"},
	} {
		if got := c.s.Protocol(); got != c.proto {
			t.Errorf("%+v: protocol %s, want %s", c.s, got, c.proto)
		}
		opts, err := c.s.opts()
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%+v: error %v, want one containing %q", c.s, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("%+v: %v", c.s, err)
		case len(opts) != c.opts:
			t.Errorf("%+v: %d options, want %d", c.s, len(opts), c.opts)
		}
	}
}

// The table names the protocol of a target reached with Security and gives
// broker CPU seconds per GB, the figures a PLAINTEXT against SASL_SSL run
// compares.
func TestTableSecurityAndCPUPerGB(t *testing.T) {
	th := func(phase string, cpu float64) Throughput {
		return Throughput{Phase: phase, RecordBytes: 60000, Bytes: 2e9, Seconds: 4, MBps: 500, CPUSeconds: cpu}
	}
	rep := &Report{Targets: []TargetReport{
		{Target: Target{Name: "plain", Addrs: []string{"127.0.0.1:9092"}, PID: 7, Kind: "external"},
			Throughput: []Throughput{th("consume", 1.5)}},
		{Target: Target{Name: "sasl", Addrs: []string{"127.0.0.1:9093"}, PID: 7, Kind: "external",
			Security: &Security{CAFile: "ca.pem", User: "bench", Password: "pw"}},
			Throughput: []Throughput{th("consume", 2.5)}},
		{Target: Target{Name: "nopid", Addrs: []string{"127.0.0.1:9094"}, PID: -1, Kind: "external"},
			Throughput: []Throughput{th("consume", 2.5)}},
	}}
	var b strings.Builder
	rep.WriteTable(&b)
	table := b.String()
	for _, want := range []string{"target sasl: external at 127.0.0.1:9093 over SASL_SSL, pid 7",
		"target plain: external at 127.0.0.1:9092, pid 7", "CPU s/GB", " 0.75 ", " 1.25 "} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "pw") {
		t.Errorf("table shows the password:\n%s", table)
	}
	js, _ := json.Marshal(rep.Targets[1].Target)
	if strings.Contains(string(js), `"pw"`) || !strings.Contains(string(js), `"user":"bench"`) {
		t.Errorf("target JSON: %s", js)
	}
}
