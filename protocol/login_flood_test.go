package protocol

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	bin "encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// The login flood runs in its own process: the test binary re-executed
// with floodEnv set ("addr,connections,sources,mechanism") runs only the flooder, from
// init, and exits. In the benchmark's own process it would share the Go
// scheduler and the garbage collector with the broker and its client, and
// measure itself rather than the broker.
const floodEnv = "ZTF_LOGIN_FLOOD"

func init() {
	if spec := os.Getenv(floodEnv); spec != "" {
		os.Exit(runLoginFlood(spec))
	}
}

// niceFlooder lowers the flooder's CPU priority where the OS can
// (login_flood_linux_test.go): a real attacker spends its own machines'
// CPU, not the broker's, and the benchmark has two cores for everything.
var niceFlooder = func() {}

// processCPU is the CPU time this process has used, user and system, where
// the OS tells (login_flood_linux_test.go); 0 elsewhere.
var processCPU = func() time.Duration { return 0 }

// floodSource is the flooder's i-th source address, when it floods from
// more than one: 127.0.1.x, which Linux routes to loopback like
// 127.0.0.1, so that each is its own address to the failed-login limiter
// (many machines, as a botnet), and none is the legitimate client's.
func floodSource(i int) *net.TCPAddr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 1+byte(i/250), 1+byte(i%250))}
}

// runLoginFlood is the flooder process: connections workers, each in a
// loop, dial (from one of sources addresses, or the default when sources
// is 0), start a SCRAM-SHA-512 login as alice or as a guessed name, answer
// the server's challenge with a proof of the right length for a wrong
// password (or send a PLAIN token with a wrong password), and without
// waiting for the verdict hang up and dial again, as fast as the broker
// lets them. It stops when stdin closes and prints its
// counts.
func runLoginFlood(spec string) int {
	f := strings.Split(spec, ",")
	if len(f) != 4 {
		fmt.Fprintf(os.Stderr, "%s=%q: want addr,connections,sources,mechanism\n", floodEnv, spec)
		return 2
	}
	addr, mechanism := f[0], f[3]
	conns, err1 := strconv.Atoi(f[1])
	sources, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil || conns < 1 || sources < 0 || sources > 2500 {
		fmt.Fprintf(os.Stderr, "%s=%q: bad numbers\n", floodEnv, spec)
		return 2
	}
	niceFlooder()
	var stopped atomic.Bool
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stopped.Store(true)
	}()
	var counts floodCounts
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 5 * time.Second}
			for i := 0; !stopped.Load() && time.Since(start) < 5*time.Minute; i++ {
				if sources > 0 { // every worker goes round every address
					d.LocalAddr = floodSource((w + i*conns) % sources)
				}
				user := "alice"
				if i%4 == 3 {
					user = "guess" + strconv.Itoa(w*1000000+i)
				}
				counts.add(floodAttempt(&d, addr, mechanism, user))
			}
		}()
	}
	fmt.Println("flooding")
	wg.Wait()
	el := time.Since(start).Seconds()
	fmt.Printf("attempts=%d proofs=%d refused=%d failed=%d errors=%d seconds=%.3f\n",
		counts.attempts.Load(), counts.proofs.Load(), counts.refused.Load(), counts.failed.Load(), counts.errors.Load(), el)
	return 0
}

type floodCounts struct {
	attempts, proofs, refused, failed, errors atomic.Int64
}

type floodOutcome int

const (
	floodProof   floodOutcome = iota // a wrong proof sent
	floodRefused                     // closed before the challenge
	floodFailed                      // refused at the first step (unknown user)
	floodError                       // could not even connect
)

func (c *floodCounts) add(o floodOutcome) {
	c.attempts.Add(1)
	switch o {
	case floodProof:
		c.proofs.Add(1)
	case floodRefused:
		c.refused.Add(1)
	case floodFailed:
		c.failed.Add(1)
	default:
		c.errors.Add(1)
	}
}

// floodAttempt is one hostile login; see runLoginFlood.
func floodAttempt(d *net.Dialer, addr, mechanism, user string) floodOutcome {
	c, err := d.Dial("tcp", addr)
	if err != nil {
		time.Sleep(time.Millisecond) // out of ports or refused: do not spin
		return floodError
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	nonce := make([]byte, 18)
	rand.Read(nonce)
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, mechanism
	first := kmsg.NewPtrSASLAuthenticateRequest()
	first.Version = 1
	first.SASLAuthBytes = []byte("n,,n=" + user + ",r=" + base64.RawStdEncoding.EncodeToString(nonce))
	if mechanism == MechanismPlain {
		first.SASLAuthBytes = []byte("\x00" + user + "\x00" + base64.RawStdEncoding.EncodeToString(nonce))
	}
	if _, err := c.Write(append(frame(hs, 1), frame(first, 2)...)); err != nil {
		return floodRefused
	}
	if mechanism == MechanismPlain {
		// The password is in: hang up once the handshake is answered
		// (a refused connection is closed before).
		var size [4]byte
		if _, err := io.ReadFull(c, size[:]); err != nil {
			return floodRefused
		}
		return floodProof
	}
	rd := bufio.NewReader(c)
	var challenge string
	for range 2 {
		var size [4]byte
		if _, err := io.ReadFull(rd, size[:]); err != nil {
			return floodRefused
		}
		body := make([]byte, bin.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(rd, body); err != nil {
			return floodRefused
		}
		if bin.BigEndian.Uint32(body) != 2 {
			continue
		}
		r := kmsg.NewPtrSASLAuthenticateResponse()
		r.Version = 1
		if err := r.ReadFrom(body[4:]); err != nil || r.ErrorCode != 0 {
			if r.ErrorCode == kerr.SaslAuthenticationFailed.Code {
				return floodFailed
			}
			return floodRefused
		}
		challenge = string(r.SASLAuthBytes)
	}
	srvNonce, ok := strings.CutPrefix(challenge, "r=")
	if !ok {
		return floodRefused
	}
	srvNonce, _, _ = strings.Cut(srvNonce, ",")
	proof := make([]byte, 64) // SHA-512's size: the server does its HMACs
	rand.Read(proof)
	final := kmsg.NewPtrSASLAuthenticateRequest()
	final.Version = 1
	final.SASLAuthBytes = []byte("c=biws,r=" + srvNonce + ",p=" + base64.StdEncoding.EncodeToString(proof))
	if _, err := c.Write(frame(final, 3)); err != nil {
		return floodRefused
	}
	return floodProof
}

// flooder is a running flood process.
type flooder struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// startFlood starts a flooder process against addr and returns once it is
// flooding.
func startFlood(tb testing.TB, addr string, conns, sources int, mechanism string) *flooder {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d,%d,%s", floodEnv, addr, conns, sources, mechanism))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	f := &flooder{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	if line, err := f.out.ReadString('\n'); err != nil || line != "flooding\n" {
		f.stop()
		tb.Fatalf("flooder did not start: %q, %v", line, err)
	}
	return f
}

// stop ends the flood and returns the flooder's counts line.
func (f *flooder) stop() string {
	f.stdin.Close()
	line, _ := f.out.ReadString('\n')
	io.Copy(io.Discard, f.out)
	f.cmd.Wait()
	return strings.TrimSpace(line)
}

// TestLoginFloodBounded: a flood of failed logins from one address, in
// another process, 16 connections redialling without waiting for the
// verdict, is held to its failed-login allowance and, once refused, to
// about one connection per failed-authentication delay per connection it
// holds; meanwhile a client from another address logs in and produces, and
// one already logged in from the flooding address keeps producing.
func TestLoginFloodBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("floods for two seconds")
	}
	if c, err := (&net.Dialer{LocalAddr: floodSource(0)}).Dial("tcp", "127.0.0.1:1"); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("cannot dial from %v (127.0.0.0/8 is loopback on Linux): %v", floodSource(0), err)
	} else if c != nil {
		c.Close()
	}
	const conns, delay = 16, 100 * time.Millisecond
	addr, s, _ := startSASLServer(t, ListenerConfig{Name: "SASL_PLAINTEXT",
		SASLMechanisms: []string{MechanismScramSHA512}, FailedAuthenticationDelay: delay})
	auth := kgo.SASL(scram.Auth{User: "alice", Pass: "s3cret"}.AsSha512Mechanism())
	// Logged in from 127.0.0.1 before the flood from the same address.
	sameAddr := newClient(t, addr, auth, kgo.AllowAutoTopicCreation())
	produce := func(cl *kgo.Client, what string) {
		t.Helper()
		if err := cl.ProduceSync(ctxT(t, 5*time.Second), &kgo.Record{Topic: "flood", Value: []byte(what)}).FirstErr(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	produce(sameAddr, "before the flood")

	fl := startFlood(t, addr, conns, 1, MechanismScramSHA512) // from 127.0.1.1
	refused := func() float64 { return metricValue(s.m.clientErrors.WithLabelValues("login_rate_limited")) }
	for deadline := time.Now().Add(10 * time.Second); refused() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			fl.stop()
			t.Fatal("the flooding address was never refused")
		}
	}
	start, refused0 := time.Now(), refused()
	other := newClient(t, addr, auth, kgo.Dialer((&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext))
	for i := 0; time.Since(start) < 2*time.Second; i++ {
		produce(other, "from another address during the flood")
		produce(sameAddr, "logged in from the flooding address during the flood")
		time.Sleep(10 * time.Millisecond)
	}
	el, refusedRate := time.Since(start), (refused()-refused0)/time.Since(start).Seconds()
	counts := fl.stop()
	t.Logf("flooder: %s; broker: %.0f failed logins, %.0f connections/s refused at accept", counts, failedLogins(s), refusedRate)
	// The allowance, one refill per loginRefill, and the connections that
	// were mid-login when it ran out.
	if max := float64(loginBurst + conns + int(el/loginRefill) + 1); failedLogins(s) > max {
		t.Errorf("%v failed logins from one address, want at most %v", failedLogins(s), max)
	}
	// Each flooding connection waits out the delay before it can redial.
	if max := 2 * conns / delay.Seconds(); refusedRate > max {
		t.Errorf("%.0f connections/s refused at accept, want at most %.0f: the delay does not hold them", refusedRate, max)
	}
}

// TestPlainDerivationSlots: a PLAIN check takes a slot only for its
// derivation, gives it back, and is refused without a derivation when its
// address spent its allowance while it waited for the slot.
func TestPlainDerivationSlots(t *testing.T) {
	creds := newMemCreds()
	creds.add(t, "alice", "s3cret")
	slots := make(chan struct{}, 1)
	yes, no := func() bool { return true }, func() bool { return false }
	if err := checkPassword(creds, "alice", "s3cret", slots, yes); err != nil {
		t.Fatalf("right password: %v", err)
	}
	if err := checkPassword(creds, "alice", "wrong", slots, yes); err == nil {
		t.Fatal("wrong password accepted")
	}
	if err := checkPassword(creds, "alice", "s3cret", slots, no); err == nil {
		t.Fatal("a login from an address over its allowance was checked")
	}
	if len(slots) != 0 {
		t.Fatalf("%d slots still held", len(slots))
	}
	slots <- struct{}{} // all slots busy: an unknown user needs none
	if err := checkPassword(creds, "mallory", "x", slots, yes); err == nil {
		t.Fatal("unknown user accepted")
	}
}

func TestFailedAuthDelaySetting(t *testing.T) {
	for _, tc := range []struct {
		set, want time.Duration
		valid     bool
	}{
		{0, defaultFailedAuthDelay, true},
		{-1, 0, true},
		{250 * time.Millisecond, 250 * time.Millisecond, true},
		{time.Minute, time.Minute, false}, // not under connections.max.idle.ms
	} {
		lc := ListenerConfig{SASLMechanisms: []string{MechanismPlain}, FailedAuthenticationDelay: tc.set}
		if got := lc.failedAuthDelay(); got != tc.want {
			t.Errorf("FailedAuthenticationDelay %v: in effect %v, want %v", tc.set, got, tc.want)
		}
		if err := lc.validFailedAuthDelay(time.Minute); (err == nil) != tc.valid {
			t.Errorf("FailedAuthenticationDelay %v: validation %v, want valid %v", tc.set, err, tc.valid)
		}
	}
}
