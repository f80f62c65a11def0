package protocol

import (
	"encoding/base64"
	bin "encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// failLogin runs one SCRAM-SHA-512 login with a made-up proof on a new
// connection and waits for the server to close it.
func failLogin(addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, MechanismScramSHA512
	first := kmsg.NewPtrSASLAuthenticateRequest()
	first.Version, first.SASLAuthBytes = 1, []byte("n,,n=alice,r=flood")
	c.Write(frame(hs, 1))
	c.Write(frame(first, 2))
	// The second answer holds the server nonce; answer it with a bad proof.
	var nonce string
	for range 2 {
		var size [4]byte
		if _, err := io.ReadFull(c, size[:]); err != nil {
			return
		}
		body := make([]byte, bin.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(c, body); err != nil {
			return
		}
		if bin.BigEndian.Uint32(body) == 2 {
			r := kmsg.NewPtrSASLAuthenticateResponse()
			r.Version = 1
			if r.ReadFrom(body[4:]) == nil && r.ErrorCode == 0 {
				nonce = string(r.SASLAuthBytes)
			}
		}
	}
	if nonce == "" {
		return // refused: the address spent its allowance
	}
	n := nonce[2:]
	for i := range n {
		if n[i] == ',' {
			n = n[:i]
			break
		}
	}
	final := kmsg.NewPtrSASLAuthenticateRequest()
	final.Version, final.SASLAuthBytes = 1, []byte("c=biws,r="+n+",p=AAAA")
	c.Write(frame(final, 3))
	io.Copy(io.Discard, c)
}

// BenchmarkProduceDuringLoginFlood produces 1 KiB records with an
// authenticated client, alone (quiet) and while another process floods the
// same listener with failed SCRAM logins (startFlood: 64 connections in
// parallel, redialling as fast as they are let), either from 100 addresses
// of their own (a botnet: each spends its failed-login allowance, 1,000
// failures, then is closed at accept) or from the client's own address
// (one machine: it is closed at accept after 10, and the client, already
// authenticated, must not notice). The failures are cheap for the server
// (HMACs on stored keys, a delayed answer, then a close at accept), so the
// producer should not slow. plain100addrs sends wrong PLAIN passwords for
// alice instead, each a full password derivation (1.6 ms), which take at
// most half the cores. Reported beside ns/op: the failed logins and
// the connections closed at accept per second of the timed loop, as the
// server counted them. Run the sub-benchmarks interleaved (-count) and
// compare medians: they share the machine.
func BenchmarkProduceDuringLoginFlood(b *testing.B) {
	for _, bc := range []struct {
		name      string
		sources   int // 0: no flood; -1: from the client's address
		mechanism string
	}{
		{"quiet", 0, ""},
		{"flood100addrs", 100, MechanismScramSHA512},
		{"flood1addr", -1, MechanismScramSHA512},
		{"plain100addrs", 100, MechanismPlain},
	} {
		b.Run(bc.name, func(b *testing.B) {
			addr, s, _ := startSASLServer(b, ListenerConfig{Name: "SASL_PLAINTEXT",
				SASLMechanisms: []string{MechanismScramSHA512, MechanismPlain}})
			cl := newClient(b, addr, kgo.SASL(scram.Auth{User: "alice", Pass: "s3cret"}.AsSha512Mechanism()),
				kgo.AllowAutoTopicCreation())
			ctx := ctxT(b, 5*time.Minute)
			value := make([]byte, 1024)
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "flood", Value: value}).FirstErr(); err != nil {
				b.Fatal(err)
			}
			var fl *flooder
			if bc.sources != 0 {
				fl = startFlood(b, addr, 64, max(0, bc.sources), bc.mechanism)
				// Timed from the first failure the server has seen.
				for deadline := time.Now().Add(10 * time.Second); failedLogins(s) == 0; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						fl.stop()
						b.Fatal("no failed login within 10s of starting the flood")
					}
				}
			}
			failed0, refused0 := failedLogins(s), metricValue(s.m.clientErrors.WithLabelValues("login_rate_limited"))
			b.SetBytes(int64(len(value)))
			b.ResetTimer()
			for range b.N {
				if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "flood", Value: value}).FirstErr(); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			sec := b.Elapsed().Seconds()
			b.ReportMetric((failedLogins(s)-failed0)/sec, "failed-logins/s")
			b.ReportMetric((metricValue(s.m.clientErrors.WithLabelValues("login_rate_limited"))-refused0)/sec, "refused/s")
			if fl != nil {
				if counts := fl.stop(); testing.Verbose() {
					b.Logf("flooder: %s", counts)
				}
			}
		})
	}
}

// failedLogins is the server's count of failed SCRAM-SHA-512 and PLAIN
// logins.
func failedLogins(s *Server) float64 {
	return metricValue(s.logins.failed.WithLabelValues(MechanismScramSHA512)) +
		metricValue(s.logins.failed.WithLabelValues(MechanismPlain))
}

// TestFloodClosedAtAccept: once an address has spent its failed-login
// allowance, its next connections to a SASL listener are closed at accept
// (before TLS, goroutines and a login exchange) and counted.
func TestFloodClosedAtAccept(t *testing.T) {
	addr, s, _ := startSASLServer(t, ListenerConfig{Name: "SASL_PLAINTEXT", SASLMechanisms: []string{MechanismScramSHA512}})
	for range loginBurst + 2 {
		failLogin(addr)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); err == nil || n != 0 || (ok && ne.Timeout()) {
		t.Fatalf("a flooding address's connection was kept open: read %d, %v", n, err)
	}
	if got := metricValue(s.m.clientErrors.WithLabelValues("login_rate_limited")); got < 1 {
		t.Fatalf("client_errors_total{reason=login_rate_limited} = %v, want >= 1", got)
	}
}

// TestPrivateListenerNotLockedOut: a flood from this machine on a public
// SASL listener does not lock the process's own clients out of their
// private listener, whose address is the same.
func TestPrivateListenerNotLockedOut(t *testing.T) {
	addr, s, _ := startSASLServer(t, ListenerConfig{Name: "SASL_PLAINTEXT", SASLMechanisms: []string{MechanismScramSHA512}})
	for range loginBurst + 2 {
		failLogin(addr)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeListener(ln, ListenerConfig{Name: "PRIVATE", SASLMechanisms: []string{MechanismScramSHA512}, Private: true})
	cl := newClient(t, ln.Addr().String(), kgo.SASL(scram.Auth{User: "alice", Pass: "s3cret"}.AsSha512Mechanism()),
		kgo.AllowAutoTopicCreation())
	// Well inside loginRefill: a locked-out client would wait for a token.
	ctx := ctxT(t, loginRefill/2)
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "private", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatalf("the private listener refused its own client after a flood elsewhere: %v", err)
	}
}

// BenchmarkFailedLogin is the server's work for one failed login, without
// the network: SCRAM answers a made-up proof with two HMACs and a hash on
// the stored keys, known user or not; PLAIN must salt and iterate the
// password it is given for a user that exists.
func BenchmarkFailedLogin(b *testing.B) {
	creds := newMemCreds()
	creds.add(b, "alice", "s3cret")
	proof := base64.StdEncoding.EncodeToString(make([]byte, 64))
	for _, bc := range []struct {
		name, mechanism string
		tokens          func(user string) []string
	}{
		{"scram", MechanismScramSHA512, func(user string) []string {
			return []string{"n,,n=" + user + ",r=abcdefgh", "c=biws,r=abcdefgh%s,p=" + proof}
		}},
		{"plain", MechanismPlain, func(user string) []string { return []string{"\x00" + user + "\x00wrong"} }},
	} {
		for _, user := range []string{"alice", "mallory"} {
			known := map[string]string{"alice": "known", "mallory": "unknown"}[user]
			b.Run(bc.name+"/"+known, func(b *testing.B) {
				for range b.N {
					x, err := newExchange(bc.mechanism, creds)
					if err != nil {
						b.Fatal(err)
					}
					var reply []byte
					for _, tok := range bc.tokens(user) {
						if strings.Contains(tok, "%s") {
							nonce, _, _ := strings.Cut(strings.TrimPrefix(string(reply), "r=abcdefgh"), ",")
							tok = fmt.Sprintf(tok, nonce)
						}
						if reply, _, err = x.step([]byte(tok)); err != nil {
							break
						}
					}
					if err == nil {
						b.Fatal("a wrong login succeeded")
					}
				}
			})
		}
	}
}

// BenchmarkLoginFloodCPU is the broker's own CPU per flood attempt: a
// server with no other client, flooded for a second by another process
// (64 connections from 100 addresses or from one), its process CPU time
// divided by the failed logins and the connections refused at accept it
// counted. b.N is not used: each run floods for one second.
func BenchmarkLoginFloodCPU(b *testing.B) {
	for _, bc := range []struct {
		name      string
		sources   int
		mechanism string
	}{
		{"idle", 0, ""},
		{"scram100addrs", 100, MechanismScramSHA512},
		{"scram1addr", 0, MechanismScramSHA512},
		{"plain100addrs", 100, MechanismPlain},
	} {
		b.Run(bc.name, func(b *testing.B) {
			addr, s, _ := startSASLServer(b, ListenerConfig{Name: "SASL_PLAINTEXT",
				SASLMechanisms: []string{MechanismScramSHA512, MechanismPlain}})
			refused := func() float64 { return metricValue(s.m.clientErrors.WithLabelValues("login_rate_limited")) }
			cpu0 := processCPU()
			counts := "idle"
			if bc.mechanism == "" {
				time.Sleep(time.Second)
			} else {
				fl := startFlood(b, addr, 64, bc.sources, bc.mechanism)
				time.Sleep(time.Second)
				counts = fl.stop()
			}
			cpu := processCPU() - cpu0
			failed, ref := failedLogins(s), refused()
			if testing.Verbose() {
				b.Logf("flooder: %s", counts)
			}
			b.ReportMetric(failed, "failed-logins")
			b.ReportMetric(ref, "refused")
			b.ReportMetric(float64(cpu.Microseconds())/max(1, failed+ref), "broker-cpu-us/attempt")
			b.ReportMetric(float64(cpu.Milliseconds()), "broker-cpu-ms")
		})
	}
}
