package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	bin "encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testCA is a certificate authority made by a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string // file holding the CA certificate
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, pem: filepath.Join(dir, name+".pem")}
	writePEMFile(t, ca.pem, "CERTIFICATE", der)
	return ca
}

// issue writes a server certificate for localhost and 127.0.0.1 signed by
// the CA to certFile and its key to keyFile.
func (ca *testCA) issue(t *testing.T, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Written beside and renamed, as an operator's tooling would.
	writePEMFile(t, certFile+".new", "CERTIFICATE", der)
	writePEMFile(t, keyFile+".new", "PRIVATE KEY", kder)
	os.Rename(keyFile+".new", keyFile)
	os.Rename(certFile+".new", certFile)
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

func writePEMFile(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// apiVersionsRoundTrip sends ApiVersions v0 on c and reads the answer.
func apiVersionsRoundTrip(c net.Conn, corr int32) error {
	req := bin.BigEndian.AppendUint32(nil, 10)
	req = bin.BigEndian.AppendUint16(req, 18)
	req = bin.BigEndian.AppendUint16(req, 0)
	req = bin.BigEndian.AppendUint32(req, uint32(corr))
	req = bin.BigEndian.AppendUint16(req, 0xffff) // null client id
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		return err
	}
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		return err
	}
	body := make([]byte, bin.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, body); err != nil {
		return err
	}
	if got := int32(bin.BigEndian.Uint32(body)); got != corr {
		return fmt.Errorf("correlation id %d, want %d", got, corr)
	}
	return nil
}

// confluentSASLScript produces n messages to a topic over SASL_SSL and
// consumes them back in a group: argv bootstrap, topic, user, password, CA
// file, n.
const confluentSASLScript = `
import sys
from confluent_kafka import Producer, Consumer, KafkaException
bootstrap, topic, user, password, ca, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
sec = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512",
       "sasl.username": user, "sasl.password": password, "ssl.ca.location": ca}
errors = []
p = Producer(dict(sec, **{"acks": "all"}))
for i in range(n):
    p.produce(topic, value=("py-%d" % i).encode(), on_delivery=lambda err, msg: err and errors.append(err))
left = p.flush(30)
if left or errors:
    sys.exit("produce: %d undelivered, errors %s" % (left, errors))
c = Consumer(dict(sec, **{"group.id": user + "-py", "auto.offset.reset": "earliest"}))
c.subscribe([topic])
got = []
import time
deadline = time.time() + 30
while len(got) < n and time.time() < deadline:
    m = c.poll(1.0)
    if m is None:
        continue
    if m.error():
        sys.exit("consume: %s" % m.error())
    got.append(m.value().decode())
c.close()
if sorted(got) != sorted("py-%d" % i for i in range(n)):
    sys.exit("consumed %s" % got)
print("ok", len(got))
`

// TestSASLSSLEndToEnd runs the binary with a SASL_SSL listener beside
// PLAINTEXT (a CA and certificate made here), adds a user with
// `ztfbroker user add` while it serves, and has kcat and
// python3-confluent-kafka (librdkafka 2.0.2, which repeats the client nonce
// in SCRAM's final message) produce and consume with SCRAM-SHA-512; a
// certificate reloaded on SIGHUP keeps a connection made before it and
// serves new ones; a listener whose allow.cidrs excludes loopback refuses;
// a wrong password fails with a clear error and is counted.
func TestSASLSSLEndToEnd(t *testing.T) {
	for _, tool := range []string{"kcat", "/usr/bin/python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed by this test and is not installed: %v", tool, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	runTool(t, ctx, nil, "/usr/bin/python3", "-c", "import confluent_kafka")

	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca1")
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	ca.issue(t, certFile, keyFile)
	saslAddr, fencedAddr := freeAddr(t), freeAddr(t)
	cfgFile := filepath.Join(dir, "ztfbroker.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`listeners:
  - name: PLAINTEXT
    listen: 127.0.0.1:0
  - name: SASL_SSL
    listen: %s
    tls.cert: %s
    tls.key: %s
    sasl.mechanisms: [SCRAM-SHA-512, SCRAM-SHA-256]
  - name: FENCED
    listen: %s
    allow.cidrs: [192.0.2.0/24, 10.0.0.0/8]
`, saslAddr, certFile, keyFile, fencedAddr)), 0o644)
	b := startBroker(t, "", "--config", cfgFile)

	// A user added while the broker runs goes through the wire.
	add := exec.CommandContext(ctx, binary, "user", "add", "--data-dir", b.DataDir, "--bootstrap", b.Kafka, "alice")
	add.Stdin = strings.NewReader("s3cret-pw\n")
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	out, err := runBinary(t, "user", "list", "--bootstrap", b.Kafka)
	if err != nil || !strings.Contains(out, "alice\tSCRAM-SHA-256,SCRAM-SHA-512") {
		t.Fatalf("user list: %v\n%s", err, out)
	}

	// Over the SASL_SSL listener, logged in as alice.
	pwFile := filepath.Join(dir, "alice.pw")
	os.WriteFile(pwFile, []byte("s3cret-pw\n"), 0o600)
	addBob := exec.CommandContext(ctx, binary, "user", "add", "--bootstrap", saslAddr, "--sasl-user", "alice",
		"--sasl-password-file", pwFile, "--tls-ca", ca.pem, "bob")
	addBob.Stdin = strings.NewReader("bob-pw\n")
	if out, err := addBob.CombinedOutput(); err != nil {
		t.Fatalf("user add over SASL_SSL: %v\n%s", err, out)
	}
	out, err = runBinary(t, "user", "list", "--bootstrap", b.Kafka)
	if err != nil || !strings.Contains(out, "bob\tSCRAM-SHA-256,SCRAM-SHA-512") {
		t.Fatalf("user list: %v\n%s", err, out)
	}

	kcatSASL := func(pass string) []string {
		return []string{"-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=SCRAM-SHA-512",
			"-X", "sasl.username=alice", "-X", "sasl.password=" + pass, "-X", "ssl.ca.location=" + ca.pem}
	}
	const topic = "sasl-e2e"
	msgs := messages(20, 100)
	kcatProduce(t, ctx, saslAddr, topic, msgs, kcatSASL("s3cret-pw")...)
	got := runTool(t, ctx, nil, "kcat", append([]string{"-b", saslAddr, "-t", topic, "-p", "0", "-C", "-o", "beginning", "-e", "-q"},
		kcatSASL("s3cret-pw")...)...)
	sameMessages(t, "kcat over SASL_SSL", bytes.Split(bytes.TrimSuffix(got, []byte("\n")), []byte("\n")), msgs)

	py := runTool(t, ctx, nil, "/usr/bin/python3", "-c", confluentSASLScript, saslAddr, "sasl-py", "alice", "s3cret-pw", ca.pem, "10")
	if !strings.HasPrefix(string(py), "ok 10") {
		t.Fatalf("python3-confluent-kafka: %s", py)
	}

	// SIGHUP: a connection made before keeps working; new ones get the
	// new certificate, from another CA.
	before, err := tls.Dial("tcp", saslAddr, &tls.Config{RootCAs: ca.pool(), ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	if err := apiVersionsRoundTrip(before, 1); err != nil {
		t.Fatal(err)
	}
	ca2 := newTestCA(t, dir, "ca2")
	ca2.issue(t, certFile, keyFile)
	if err := b.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !b.waitLog("TLS certificates reloaded") {
		t.Fatalf("no reload logged:\n%s", b.Logs())
	}
	if err := apiVersionsRoundTrip(before, 2); err != nil {
		t.Fatalf("connection made before the reload: %v", err)
	}
	after, err := tls.Dial("tcp", saslAddr, &tls.Config{RootCAs: ca2.pool(), ServerName: "localhost"})
	if err != nil {
		t.Fatalf("new certificate not served after SIGHUP: %v", err)
	}
	after.Close()
	if c, err := tls.Dial("tcp", saslAddr, &tls.Config{RootCAs: ca.pool(), ServerName: "localhost"}); err == nil {
		c.Close()
		t.Fatal("the old certificate is still served to new connections")
	}
	ca = ca2
	kcatProduce(t, ctx, saslAddr, topic, messages(1, 50), kcatSASL("s3cret-pw")...)

	// Outside allow.cidrs: closed at accept.
	c, err := net.Dial("tcp", fencedAddr)
	if err != nil {
		t.Fatal(err)
	}
	if err := apiVersionsRoundTrip(c, 3); err == nil {
		t.Fatal("a connection from outside allow.cidrs was served")
	}
	c.Close()
	if !b.waitLog("outside the listener's allow.cidrs") {
		t.Fatalf("refusal not logged:\n%s", b.Logs())
	}
	if v := metric(t, b, `ztfbroker_kafka_client_errors_total{reason="cidr_refused"}`); v == "0" {
		t.Fatal("refusal not counted")
	}

	// Last, as it spends loopback's failed-login allowance: a wrong password.
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	wrong := exec.CommandContext(wctx, "kcat", append([]string{"-b", saslAddr, "-L", "-m", "5"}, kcatSASL("wrong")...)...)
	wout, err := wrong.CombinedOutput()
	if err == nil {
		t.Fatalf("kcat with a wrong password succeeded:\n%s", wout)
	}
	if !strings.Contains(string(wout), "Authentication failed") {
		t.Fatalf("kcat's error does not say authentication failed:\n%s", wout)
	}
	n, _ := strconv.ParseFloat(metric(t, b, `ztfbroker_sasl_failed_logins_total{mechanism="SCRAM-SHA-512"}`), 64)
	if n < 1 {
		t.Fatalf("failed logins counted %v", n)
	}
	if !b.waitLog(`"user":"alice"`) || !strings.Contains(b.Logs(), "SASL authentication failed") {
		t.Fatalf("failed login not logged with its user:\n%s", b.Logs())
	}
}

// TestUserCommandOnDataDir manages users on a data directory no broker
// holds, then logs in with kcat once a broker serves it.
func TestUserCommandOnDataDir(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("first-pw\n"), 0o600)
	user := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(binary, append([]string{"user"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := user("", "add", "--data-dir", data, "--password-file", pwFile, "bob"); err != nil {
		t.Fatalf("add: %v\n%s", err, out)
	}
	if out, err := user("x\n", "add", "--data-dir", data, "bob"); err == nil || !strings.Contains(out, "exists") {
		t.Fatalf("add twice: %v\n%s", err, out)
	}
	if out, err := user("second-pw\n", "passwd", "--data-dir", data, "--mechanisms", "SCRAM-SHA-512", "bob"); err != nil {
		t.Fatalf("passwd: %v\n%s", err, out)
	}
	if out, err := user("pw\n", "add", "--data-dir", data, "carol"); err != nil {
		t.Fatalf("add carol: %v\n%s", err, out)
	}
	if out, err := user("", "remove", "--data-dir", data, "carol"); err != nil {
		t.Fatalf("remove: %v\n%s", err, out)
	}
	out, err := user("", "list", "--data-dir", data)
	if err != nil || out != "bob\tSCRAM-SHA-256,SCRAM-SHA-512\n" {
		t.Fatalf("list: %v\n%q", err, out)
	}
	// The stored record holds no password.
	raw, _ := exec.Command("grep", "-rl", "second-pw", data).Output()
	if len(raw) != 0 {
		t.Fatalf("password found in %s", raw)
	}

	saslAddr := freeAddr(t)
	cfgFile := filepath.Join(dir, "ztfbroker.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`listeners:
  - name: PLAINTEXT
    listen: 127.0.0.1:0
  - name: SASL_PLAINTEXT
    listen: %s
`, saslAddr)), 0o644)
	startBroker(t, data, "--config", cfgFile)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kcatProduce(t, ctx, saslAddr, "bob-topic", messages(3, 20), "-X", "security.protocol=SASL_PLAINTEXT",
		"-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", "sasl.username=bob", "-X", "sasl.password=second-pw")
}
