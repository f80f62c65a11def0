package protocol

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	bin "encoding/binary"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// memCreds is a Credentials in memory.
type memCreds struct {
	mu    sync.Mutex
	users map[string]map[string]memCred
}

type memCred struct {
	salt          []byte
	iters         int
	stored, serve []byte
}

func newMemCreds() *memCreds { return &memCreds{users: map[string]map[string]memCred{}} }

func (m *memCreds) add(t testing.TB, user, pass string) {
	for _, mech := range ScramMechanisms {
		salt := []byte("salt-" + user + mech)
		st, sv, err := DeriveScramCredential(mech, user, pass, salt, 4096)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetScramCredential(user, mech, salt, 4096, st, sv); err != nil {
			t.Fatal(err)
		}
	}
}

func (m *memCreds) ScramCredential(user, mech string) ([]byte, int, []byte, []byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.users[user][mech]
	return c.salt, c.iters, c.stored, c.serve, ok, nil
}

func (m *memCreds) SetScramCredential(user, mech string, salt []byte, iters int, stored, server []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.users[user] == nil {
		m.users[user] = map[string]memCred{}
	}
	m.users[user][mech] = memCred{salt, iters, stored, server}
	return nil
}

func (m *memCreds) DeleteScramCredential(user, mech string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.users[user][mech]
	delete(m.users[user], mech)
	if len(m.users[user]) == 0 {
		delete(m.users, user)
	}
	return ok, nil
}

func (m *memCreds) ScramUsers() (map[string]map[string]int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]map[string]int{}
	for u, ms := range m.users {
		out[u] = map[string]int{}
		for mech, c := range ms {
			out[u][mech] = c.iters
		}
	}
	return out, nil
}

// scramClientFinal computes a client-final-message by RFC 5802 with the
// nonce given, as librdkafka does whatever nonce it sends.
func scramClientFinal(t testing.TB, mech, pass, clientFirstBare, serverFirst, nonce string) (final, wantServerFinal string) {
	t.Helper()
	h := hashFor(mech)
	var salt []byte
	var iters int
	for f := range strings.SplitSeq(serverFirst, ",") {
		switch {
		case strings.HasPrefix(f, "s="):
			salt, _ = base64.StdEncoding.DecodeString(f[2:])
		case strings.HasPrefix(f, "i="):
			for _, d := range f[2:] {
				iters = iters*10 + int(d-'0')
			}
		}
	}
	salted, err := pbkdf2.Key(h, pass, salt, iters, h().Size())
	if err != nil {
		t.Fatal(err)
	}
	clientKey := hmacOf(h, salted, []byte("Client Key"))
	hh := h()
	hh.Write(clientKey)
	storedKey := hh.Sum(nil)
	serverKey := hmacOf(h, salted, []byte("Server Key"))
	wop := "c=biws,r=" + nonce
	auth := []byte(clientFirstBare + "," + serverFirst + "," + wop)
	sig := hmacOf(h, storedKey, auth)
	proof := make([]byte, len(sig))
	for i := range sig {
		proof[i] = clientKey[i] ^ sig[i]
	}
	return wop + ",p=" + base64.StdEncoding.EncodeToString(proof),
		"v=" + base64.StdEncoding.EncodeToString(hmacOf(h, serverKey, auth))
}

// TestScramExchange runs the server side against the correct client-final
// nonce, librdkafka < 2.6.1's repeated client nonce, and wrong ones.
func TestScramExchange(t *testing.T) {
	creds := newMemCreds()
	creds.add(t, "alice", "s3cret")
	const cnonce = "fyko+d2lbbFgONRv9qkxdawL"
	for _, mech := range ScramMechanisms {
		for _, tc := range []struct {
			name  string
			user  string
			pass  string
			nonce func(full string) string
			ok    bool
		}{
			{"correct", "alice", "s3cret", func(full string) string { return full }, true},
			{"repeated client nonce", "alice", "s3cret", func(full string) string { return cnonce + full }, true},
			{"wrong password", "alice", "guess", func(full string) string { return full }, false},
			{"repeated, wrong password", "alice", "guess", func(full string) string { return cnonce + full }, false},
			{"client nonce only", "alice", "s3cret", func(string) string { return cnonce }, false},
			{"server nonce cut", "alice", "s3cret", func(full string) string { return full[:len(full)-1] }, false},
			{"prefix other than the client nonce", "alice", "s3cret", func(full string) string { return "x" + full }, false},
			{"repeated twice", "alice", "s3cret", func(full string) string { return cnonce + cnonce + full }, false},
			{"server nonce altered", "alice", "s3cret", func(full string) string { return full[:len(full)-1] + "!" }, false},
			{"unknown user", "bob", "s3cret", func(full string) string { return full }, false},
		} {
			t.Run(mech+"/"+tc.name, func(t *testing.T) {
				x, err := newExchange(mech, creds)
				if err != nil {
					t.Fatal(err)
				}
				bare := "n=" + tc.user + ",r=" + cnonce
				sf, done, err := x.step([]byte("n,," + bare))
				if err != nil || done {
					if !tc.ok && tc.user != "alice" && errors.Is(err, errAuthFailed) {
						return // unknown user fails at the first step
					}
					t.Fatalf("first step: done %v, %v", done, err)
				}
				full, _, _ := strings.Cut(strings.TrimPrefix(string(sf), "r="), ",")
				if !strings.HasPrefix(full, cnonce) || len(full) <= len(cnonce) {
					t.Fatalf("server nonce %q does not extend the client's", full)
				}
				final, want := scramClientFinal(t, mech, tc.pass, bare, string(sf), tc.nonce(full))
				reply, done, err := x.step([]byte(final))
				if tc.ok {
					if err != nil || !done || string(reply) != want {
						t.Fatalf("final step: %q done %v err %v; want %q", reply, done, err, want)
					}
					if x.user() != "alice" {
						t.Fatalf("user %q", x.user())
					}
					return
				}
				if err == nil || done {
					t.Fatalf("accepted: %q done %v", reply, done)
				}
			})
		}
	}
}

// TestScramExchangeLibraryClient logs in with xdg-go/scram's own client.
func TestScramExchangeLibraryClient(t *testing.T) {
	creds := newMemCreds()
	creds.add(t, "alice", "s3cret")
	for _, mech := range ScramMechanisms {
		x, err := newExchange(mech, creds)
		if err != nil {
			t.Fatal(err)
		}
		cl, _ := hashFor(mech).NewClient("alice", "s3cret", "")
		conv := cl.NewConversation()
		var in string
		for i := 0; !conv.Done(); i++ {
			out, err := conv.Step(in)
			if err != nil {
				t.Fatalf("%s client step %d: %v", mech, i, err)
			}
			if conv.Done() {
				break
			}
			reply, _, err := x.step([]byte(out))
			if err != nil {
				t.Fatalf("%s server step %d: %v", mech, i, err)
			}
			in = string(reply)
		}
		if !conv.Valid() {
			t.Fatalf("%s: client did not verify the server", mech)
		}
	}
}

func TestPlainExchange(t *testing.T) {
	creds := newMemCreds()
	creds.add(t, "alice", "s3cret")
	for _, tc := range []struct {
		token string
		ok    bool
	}{
		{"\x00alice\x00s3cret", true},
		{"alice\x00alice\x00s3cret", true},
		{"\x00alice\x00s3cre", false},
		{"bob\x00alice\x00s3cret", false},
		{"\x00bob\x00s3cret", false},
		{"\x00alice", false},
		{"", false},
	} {
		x, _ := newExchange(MechanismPlain, creds)
		_, done, err := x.step([]byte(tc.token))
		if done != tc.ok || (err == nil) != tc.ok {
			t.Errorf("%q: done %v err %v", tc.token, done, err)
		}
	}
}

func TestLoginLimiter(t *testing.T) {
	l, err := newLoginLimiter(nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for range loginBurst {
		if !l.allowed(a) {
			t.Fatal("refused before the burst was spent")
		}
		l.fail(a, MechanismScramSHA512, "")
	}
	if l.allowed(a) {
		t.Fatal("allowed after the burst")
	}
	if !l.allowed(b) {
		t.Fatal("another address refused")
	}
	now = now.Add(loginRefill)
	if !l.allowed(a) {
		t.Fatal("refused after a refill")
	}
	if got := metricValue(l.failed.WithLabelValues(MechanismScramSHA512)); got != loginBurst {
		t.Fatalf("failed logins counted %v", got)
	}
}

// credBackend is a memBackend with a user store.
type credBackend struct {
	*memBackend
	*memCreds
}

// startSASLServer serves one SASL listener (and TLS when tlsCfg is set).
func startSASLServer(t testing.TB, lc ListenerConfig) (addr string, s *Server, reg *prometheus.Registry) {
	t.Helper()
	creds := newMemCreds()
	creds.add(t, "alice", "s3cret")
	reg = prometheus.NewRegistry()
	s, err := NewServer(Config{}, credBackend{newMemBackend(), creds}, nil, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.ServeListener(ln, lc) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-served
	})
	return ln.Addr().String(), s, reg
}

func TestSASLListener(t *testing.T) {
	addr, s, _ := startSASLServer(t, ListenerConfig{Name: "SASL_PLAINTEXT",
		SASLMechanisms: []string{MechanismScramSHA256, MechanismScramSHA512, MechanismPlain}})

	// Before authentication only ApiVersions and the SASL keys are served.
	c := dial(t, addr)
	if _, err := c.Write(frame(kmsg.NewPtrMetadataRequest(), 1)); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, "GSSAPI"
	if r := rawRoundTrip(t, addr, hs).(*kmsg.SASLHandshakeResponse); r.ErrorCode != 33 || len(r.SupportedMechanisms) != 3 {
		t.Fatalf("handshake GSSAPI: %+v", r)
	}

	for name, m := range map[string]kgo.Opt{
		"sha256": kgo.SASL(scram.Auth{User: "alice", Pass: "s3cret"}.AsSha256Mechanism()),
		"sha512": kgo.SASL(scram.Auth{User: "alice", Pass: "s3cret"}.AsSha512Mechanism()),
		"plain":  kgo.SASL(plain.Auth{User: "alice", Pass: "s3cret"}.AsMechanism()),
	} {
		t.Run(name, func(t *testing.T) {
			topic := "t-" + name
			cl := newClient(t, addr, m, kgo.AllowAutoTopicCreation(), kgo.ConsumeTopics(topic))
			if err := cl.ProduceSync(ctxT(t, 10*time.Second), &kgo.Record{Topic: topic, Value: []byte("v")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			consume(t, cl, 1, 10*time.Second)
		})
	}

	before := metricValue(s.logins.failed.WithLabelValues(MechanismScramSHA512))
	cl := newClient(t, addr, kgo.SASL(scram.Auth{User: "alice", Pass: "guess"}.AsSha512Mechanism()),
		kgo.RequestRetries(0))
	err := cl.Ping(ctxT(t, 10*time.Second))
	if err == nil || !strings.Contains(err.Error(), "invalid credentials") {
		t.Fatalf("wrong password: %v", err)
	}
	if after := metricValue(s.logins.failed.WithLabelValues(MechanismScramSHA512)); after <= before {
		t.Fatalf("failed logins %v -> %v", before, after)
	}
	if n := metricValue(s.logins.byUser.WithLabelValues("alice")); n != 1 {
		t.Fatalf("alice's failed logins %v", n)
	}
	cl = newClient(t, addr, kgo.SASL(scram.Auth{User: "mallory", Pass: "guess"}.AsSha512Mechanism()), kgo.RequestRetries(0))
	cl.Ping(ctxT(t, 10*time.Second))
	if n := metricValue(s.logins.byUser.WithLabelValues("unknown")); n < 1 {
		t.Fatalf("unknown users' failed logins %v", n)
	}
}

func TestTLSListenerAndCIDR(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := dir+"/cert.pem", dir+"/key.pem"
	pool := writeSelfSigned(t, certFile, keyFile, "first")
	cert, err := LoadCertificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	addr, _, _ := startSASLServer(t, ListenerConfig{Name: "SASL_SSL", TLS: cert.TLSConfig(),
		SASLMechanisms: []string{MechanismScramSHA512}})
	dialTLS := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	cl := newClient(t, addr, kgo.DialTLSConfig(dialTLS),
		kgo.SASL(scram.Auth{User: "alice", Pass: "s3cret"}.AsSha512Mechanism()))
	if err := cl.Ping(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	// A reload serves the new certificate to new connections.
	pool2 := writeSelfSigned(t, certFile, keyFile, "second")
	if err := cert.Reload(); err != nil {
		t.Fatal(err)
	}
	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool2, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("new certificate not served: %v", err)
	}
	tc.Close()
	if err := cl.Ping(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("existing connection after reload: %v", err)
	}

	addr, s, _ := startSASLServer(t, ListenerConfig{Name: "ELSEWHERE",
		AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	before := metricValue(s.m.clientErrors.WithLabelValues("cidr_refused"))
	expectClosed(t, dial(t, addr))
	if after := metricValue(s.m.clientErrors.WithLabelValues("cidr_refused")); after != before+1 {
		t.Fatalf("refusals counted %v -> %v", before, after)
	}
}

// writeSelfSigned writes a self-signed certificate for localhost and
// returns a pool trusting it.
func writeSelfSigned(t testing.TB, certFile, keyFile, cn string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return pool
}

// FuzzScramServer feeds arbitrary client messages to the SCRAM server side.
func FuzzScramServer(f *testing.F) {
	f.Add("n,,n=alice,r=abc", "c=biws,r=abcdef,p=AAAA")
	f.Add("n,a=alice,n=alice,r=abc", "c=biws,r=abcabcdef,e=1,p=")
	f.Add("y,,n=al=2Cice,r=", "c=,r=,p=")
	creds := newMemCreds()
	creds.add(f, "alice", "s3cret")
	f.Fuzz(func(t *testing.T, first, final string) {
		for _, mech := range ScramMechanisms {
			x, _ := newExchange(mech, creds)
			if _, _, err := x.step([]byte(first)); err != nil {
				continue
			}
			if _, done, err := x.step([]byte(final)); done || err == nil {
				t.Fatalf("a made-up proof was accepted: %q %q", first, final)
			}
		}
		parseClientFinal(final)
		parseClientFirst(first)
	})
}

// FuzzPlainToken feeds arbitrary PLAIN tokens.
func FuzzPlainToken(f *testing.F) {
	f.Add([]byte("\x00alice\x00s3cret"))
	f.Add([]byte("a\x00b\x00c\x00d"))
	creds := newMemCreds()
	creds.add(f, "alice", "s3cret")
	f.Fuzz(func(t *testing.T, tok []byte) {
		x, _ := newExchange(MechanismPlain, creds)
		_, done, err := x.step(tok)
		if done != (err == nil) {
			t.Fatalf("done %v err %v", done, err)
		}
		if done && string(tok) != "\x00alice\x00s3cret" && string(tok) != "alice\x00alice\x00s3cret" {
			t.Fatalf("accepted %q", tok)
		}
	})
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestUserScramCredentialsAdmin sets, describes and deletes users over the
// wire with kadm, then logs in as the new one.
func TestUserScramCredentialsAdmin(t *testing.T) {
	addr, s, _ := startSASLServer(t, ListenerConfig{Name: "PLAINTEXT"})
	adm := kadm.NewClient(newClient(t, addr))
	ctx := ctxT(t, 10*time.Second)
	res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{
		{User: "bob", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: "hunter2"},
		{User: "bob", Mechanism: kadm.ScramSha256, Iterations: 8192, Password: "hunter2"},
		{User: "dora", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: "pä\u00a0ss"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res["bob"].Err != nil {
		t.Fatalf("alter: %v", res["bob"].Err)
	}
	desc, err := adm.DescribeUserSCRAMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := desc["bob"].CredInfos; len(got) != 2 || desc["alice"].Err != nil || len(desc) != 3 {
		t.Fatalf("describe: %+v", desc)
	}
	for _, mech := range ScramMechanisms {
		x, _ := newExchange(mech, s.creds)
		cl, _ := hashFor(mech).NewClient("bob", "hunter2", "")
		conv := cl.NewConversation()
		first, _ := conv.Step("")
		sf, _, err := x.step([]byte(first))
		if err != nil {
			t.Fatal(err)
		}
		final, _ := conv.Step(string(sf))
		if _, done, err := x.step([]byte(final)); !done || err != nil {
			t.Fatalf("%s login as bob: %v", mech, err)
		}
	}
	// A password set over the wire checks out through PLAIN, which derives
	// it here: both use its bytes as they are (no SASLprep).
	if x, _ := newExchange(MechanismPlain, s.creds); true {
		if _, done, err := x.step([]byte("\x00dora\x00pä\u00a0ss")); !done || err != nil {
			t.Fatalf("PLAIN as dora: %v", err)
		}
	}
	res, err = adm.AlterUserSCRAMs(ctx, []kadm.DeleteSCRAM{{User: "bob", Mechanism: kadm.ScramSha512}, {User: "nobody", Mechanism: kadm.ScramSha512}}, nil)
	if err != nil || res["bob"].Err != nil || res["nobody"].Err == nil {
		t.Fatalf("delete: %+v %v", res, err)
	}
}

// TestSaslHandshakeV0 runs the bare-token exchange that follows
// SaslHandshake v0, for PLAIN and SCRAM, then a normal request.
func TestSaslHandshakeV0(t *testing.T) {
	addr, _, _ := startSASLServer(t, ListenerConfig{Name: "SASL_PLAINTEXT",
		SASLMechanisms: []string{MechanismScramSHA512, MechanismPlain}})
	rawToken := func(c net.Conn, tok []byte) []byte {
		t.Helper()
		if _, err := c.Write(append(bin.BigEndian.AppendUint32(nil, uint32(len(tok))), tok...)); err != nil {
			t.Fatal(err)
		}
		return readFrame(t, c)
	}
	handshake := func(mech string) net.Conn {
		c := dial(t, addr)
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Version, hs.Mechanism = 0, mech
		if _, err := c.Write(frame(hs, 1)); err != nil {
			t.Fatal(err)
		}
		body := readFrame(t, c)
		resp := kmsg.NewPtrSASLHandshakeResponse()
		if err := resp.ReadFrom(body[4:]); err != nil || resp.ErrorCode != 0 {
			t.Fatalf("handshake v0 %s: %v %+v", mech, err, resp)
		}
		return c
	}
	metadataOK := func(c net.Conn) {
		t.Helper()
		if _, err := c.Write(frame(kmsg.NewPtrMetadataRequest(), 9)); err != nil {
			t.Fatal(err)
		}
		if corr := int32(bin.BigEndian.Uint32(readFrame(t, c))); corr != 9 {
			t.Fatalf("metadata after v0 login: correlation %d", corr)
		}
	}

	c := handshake(MechanismPlain)
	if got := rawToken(c, []byte("\x00alice\x00s3cret")); len(got) != 0 {
		t.Fatalf("PLAIN v0 reply %q", got)
	}
	metadataOK(c)

	c = handshake(MechanismScramSHA512)
	cl, _ := hashFor(MechanismScramSHA512).NewClient("alice", "s3cret", "")
	conv := cl.NewConversation()
	first, _ := conv.Step("")
	final, err := conv.Step(string(rawToken(c, []byte(first))))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conv.Step(string(rawToken(c, []byte(final)))); err != nil || !conv.Valid() {
		t.Fatalf("server-final: %v", err)
	}
	metadataOK(c)

	c = handshake(MechanismPlain)
	if _, err := c.Write(append(bin.BigEndian.AppendUint32(nil, 12), "\x00alice\x00wrong"...)); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)
}

// TestTLSHandshakeFailureCounted: a client that does not trust the
// certificate, or speaks plaintext to a TLS listener, is counted.
func TestTLSHandshakeFailureCounted(t *testing.T) {
	dir := t.TempDir()
	writeSelfSigned(t, dir+"/c.pem", dir+"/k.pem", "x")
	cert, err := LoadCertificate(dir+"/c.pem", dir+"/k.pem")
	if err != nil {
		t.Fatal(err)
	}
	addr, s, _ := startSASLServer(t, ListenerConfig{Name: "SSL", TLS: cert.TLSConfig()})
	c := dial(t, addr)
	c.Write(frame(kmsg.NewPtrMetadataRequest(), 1))
	expectClosed(t, c)
	deadline := time.Now().Add(5 * time.Second)
	for metricValue(s.m.clientErrors.WithLabelValues("tls_handshake")) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("failed TLS handshake not counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
