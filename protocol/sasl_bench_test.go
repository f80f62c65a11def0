package protocol

import (
	bin "encoding/binary"
	"io"
	"net"
	"sync"
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
// authenticated client, alone and while 1,000 failed logins hit the same
// listener: the failures are cheap for the server (HMACs on stored keys,
// refused outright once an address spends its allowance), so the producer
// should not slow.
func BenchmarkProduceDuringLoginFlood(b *testing.B) {
	for _, flood := range []int{0, 1000} {
		name := "quiet"
		if flood > 0 {
			name = "flood1000"
		}
		b.Run(name, func(b *testing.B) {
			addr, _, _ := startSASLServer(b, ListenerConfig{Name: "SASL_PLAINTEXT",
				SASLMechanisms: []string{MechanismScramSHA512}})
			cl := newClient(b, addr, kgo.SASL(scram.Auth{User: "alice", Pass: "s3cret"}.AsSha512Mechanism()),
				kgo.AllowAutoTopicCreation())
			ctx := ctxT(b, 5*time.Minute)
			value := make([]byte, 1024)
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "flood", Value: value}).FirstErr(); err != nil {
				b.Fatal(err)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < flood; i += 4 {
						select {
						case <-stop:
							return
						default:
						}
						failLogin(addr)
					}
				}()
			}
			b.SetBytes(int64(len(value)))
			b.ResetTimer()
			for range b.N {
				if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "flood", Value: value}).FirstErr(); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			close(stop)
			wg.Wait()
		})
	}
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
