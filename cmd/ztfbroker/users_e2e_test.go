package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// usersBroker is a broker with loopback superuser off, so that the ACLs
// apply to every connection, serving a SASL_SSL listener with a CA made by
// the test, and the users operator (a super user), alice (in the partners
// group) and carol (a public user with no ACL).
type usersBroker struct {
	*serveProc
	sasl string // host:port of the SASL_SSL listener
	ca   *testCA
	pw   map[string]string
}

func startUsersBroker(t *testing.T) *usersBroker {
	t.Helper()
	dir := t.TempDir()
	u := &usersBroker{ca: newTestCA(t, dir, "users-ca"), sasl: freeAddr(t),
		pw: map[string]string{"operator": "op-pw-1", "alice": "alice-pw-2", "carol": "carol-pw-3"}}
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	u.ca.issue(t, certFile, keyFile)
	cfgFile := filepath.Join(dir, "ztfbroker.yaml")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf(`listeners:
  - name: PLAINTEXT
    listen: 127.0.0.1:0
  - name: SASL_SSL
    listen: %s
    tls.cert: %s
    tls.key: %s
    sasl.mechanisms: [SCRAM-SHA-512, SCRAM-SHA-256]
authz:
  loopback.superuser: false
  super.users: [operator]
  groups: [partners=alice]
`, u.sasl, certFile, keyFile)), 0o644); err != nil {
		t.Fatal(err)
	}
	// The users go straight into the data directory before the broker
	// holds it: with loopback superuser off, nobody could add them over the
	// wire before operator exists.
	dataDir := filepath.Join(dir, "data")
	for name, pw := range u.pw {
		pwFile := filepath.Join(dir, name+".pw")
		os.WriteFile(pwFile, []byte(pw+"\n"), 0o600)
		if out, err := runBinary(t, "user", "add", "--data-dir", dataDir, "--password-file", pwFile, name); err != nil {
			t.Fatalf("user add %s: %v\n%s", name, err, out)
		}
	}
	u.serveProc = startBroker(t, dataDir, "--config", cfgFile)
	return u
}

// client logs in as user with SCRAM-SHA-512 over TLS.
func (u *usersBroker) client(t *testing.T, user string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return newClient(t, u.sasl, append([]kgo.Opt{
		kgo.DialTLSConfig(&tls.Config{RootCAs: u.ca.pool(), MinVersion: tls.VersionTLS12}),
		kgo.SASL(scram.Auth{User: user, Pass: u.pw[user]}.AsSha512Mechanism()),
	}, opts...)...)
}

// readPartition reads partition 0 of topic from the start until it has want
// records or a fetch fails, and returns what it read and the first error.
func readPartition(ctx context.Context, cl *kgo.Client, topic string, want int) (int, error) {
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(0)}})
	n := 0
	for n < want {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return n, err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if ferr == nil {
				ferr = err
			}
		})
		n += len(fs.Records())
		if ferr != nil {
			return n, ferr
		}
	}
	return n, nil
}

// TestUsersEndToEnd runs the binary with loopback superuser off and three
// SCRAM users over SASL_SSL: alice, a partner with READ on every ztf_ topic
// by a prefixed ACL made by the super user operator, reads the public and the
// partnership stream; carol, a public user, reads the public stream only,
// does not see the partnership topic in metadata, may not use alice's
// consumer groups, and is held to her per-user fetch quota while alice
// fetches the same topic at full speed; alice may not produce without WRITE;
// kcat (librdkafka 2.0.2) logs in as alice and as carol with the same result.
func TestUsersEndToEnd(t *testing.T) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatalf("kcat is needed by this test and is not installed: %v", err)
	}
	u := startUsersBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// The operator makes the topics, fills them and grants the partners READ.
	op := u.client(t, "operator", kgo.DisableIdempotentWrite())
	adm := kadm.NewClient(op)
	for _, topic := range []string{publicTopic, partnershipTopic} {
		if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
			t.Fatalf("create %s as operator: %v", topic, err)
		}
	}
	const few = 5
	for _, topic := range []string{publicTopic, partnershipTopic} {
		for i := 0; i < few; i++ {
			r := &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("alert-%s-%d", topic[len(topic)-1:], i))}
			if err := op.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatalf("produce to %s as operator: %v", topic, err)
			}
		}
	}
	// The operator grants the partners READ with `ztfbroker acl add`,
	// logged in over SASL_SSL: loopback is no superuser here.
	opPW := filepath.Join(t.TempDir(), "operator.pw")
	os.WriteFile(opPW, []byte(u.pw["operator"]+"\n"), 0o600)
	if out, err := runBinary(t, "acl", "add", "--bootstrap", u.sasl, "--sasl-user", "operator", "--sasl-password-file", opPW,
		"--tls-ca", u.ca.pem, "--principal", "Group:partners", "--operation", "READ", "--topic", "ztf_", "--prefixed"); err != nil {
		t.Fatalf("ztfbroker acl add as operator over SASL_SSL: %v\n%s", err, out)
	}
	if out, err := runBinary(t, "acl", "add", "--bootstrap", u.sasl, "--principal", "Group:partners", "--operation", "WRITE",
		"--topic", "ztf_", "--prefixed", "--tls-ca", u.ca.pem); err == nil {
		t.Fatalf("ztfbroker acl add without logging in was accepted:\n%s", out)
	}

	t.Run("reads", func(t *testing.T) {
		for _, tc := range []struct {
			user, topic string
			refused     bool
		}{
			{"alice", publicTopic, false},
			{"alice", partnershipTopic, false},
			{"carol", publicTopic, false},
			{"carol", partnershipTopic, true},
		} {
			rctx, rcancel := context.WithTimeout(ctx, 15*time.Second)
			n, err := readPartition(rctx, u.client(t, tc.user), tc.topic, few)
			rcancel()
			switch {
			case tc.refused && !errors.Is(err, kerr.TopicAuthorizationFailed):
				t.Errorf("%s reading %s: %v after %d records, want TOPIC_AUTHORIZATION_FAILED", tc.user, tc.topic, err, n)
			case tc.refused && n > 0:
				t.Errorf("%s read %d records of %s", tc.user, n, tc.topic)
			case !tc.refused && (err != nil || n != few):
				t.Errorf("%s reading %s: %d records, %v; want %d", tc.user, tc.topic, n, err, few)
			}
		}
		for user, wantPartnership := range map[string]bool{"alice": true, "carol": false} {
			listed, err := kadm.NewClient(u.client(t, user)).ListTopics(ctx)
			if err != nil {
				t.Fatalf("ListTopics as %s: %v", user, err)
			}
			if !listed.Has(publicTopic) || listed.Has(partnershipTopic) != wantPartnership {
				t.Errorf("metadata for %s lists %v; want %s, and %s: %v", user, listed.Names(), publicTopic, partnershipTopic, wantPartnership)
			}
		}
	})

	t.Run("groups", func(t *testing.T) {
		// joinGroup consumes the public topic in group; it returns how many
		// records it got and the first error polled.
		joinGroup := func(group string) (int, error) {
			gctx, gcancel := context.WithTimeout(ctx, 15*time.Second)
			defer gcancel()
			cl := u.client(t, "carol", kgo.ConsumerGroup(group), kgo.ConsumeTopics(publicTopic),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			defer cl.Close()
			n := 0
			for n < few {
				fs := cl.PollFetches(gctx)
				if err := gctx.Err(); err != nil {
					return n, err
				}
				var ferr error
				fs.EachError(func(_ string, _ int32, err error) { ferr = err })
				if ferr != nil {
					return n, ferr
				}
				n += len(fs.Records())
			}
			return n, nil
		}
		n, err := joinGroup("alice-x")
		t.Logf("carol joining alice-x: %v", err)
		if !errors.Is(err, kerr.GroupAuthorizationFailed) || n > 0 {
			t.Errorf("carol in group alice-x: %d records, %v; want GROUP_AUTHORIZATION_FAILED", n, err)
		}
		if n, err := joinGroup("carol-x"); err != nil || n != few {
			t.Errorf("carol in group carol-x: %d records, %v; want %d", n, err, few)
		}
	})

	t.Run("produce", func(t *testing.T) {
		cl := u.client(t, "alice", kgo.DisableIdempotentWrite(), kgo.RecordRetries(1))
		err := cl.ProduceSync(ctx, &kgo.Record{Topic: partnershipTopic, Value: []byte("forged")}).FirstErr()
		if !errors.Is(err, kerr.TopicAuthorizationFailed) {
			t.Errorf("alice producing to %s without WRITE: %v, want TOPIC_AUTHORIZATION_FAILED", partnershipTopic, err)
		}
		end, err := adm.ListEndOffsets(ctx, partnershipTopic)
		if err != nil {
			t.Fatal(err)
		}
		if o, _ := end.Lookup(partnershipTopic, 0); o.Offset != few {
			t.Errorf("%s ends at %d after the refused produce, want %d", partnershipTopic, o.Offset, few)
		}
	})

	t.Run("kcat", func(t *testing.T) {
		kcat := func(user string) ([]byte, error) {
			kctx, kcancel := context.WithTimeout(ctx, 20*time.Second)
			defer kcancel()
			return exec.CommandContext(kctx, "kcat", "-b", u.sasl, "-X", "security.protocol=SASL_SSL",
				"-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", "sasl.username="+user, "-X", "sasl.password="+u.pw[user],
				"-X", "ssl.ca.location="+u.ca.pem, "-C", "-t", partnershipTopic, "-o", "beginning", "-e", "-q").CombinedOutput()
		}
		out, err := kcat("alice")
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if err != nil || len(lines) != few || lines[0] != "alert-2-0" {
			t.Errorf("kcat as alice reading %s: %v, %d lines:\n%s", partnershipTopic, err, len(lines), out)
		}
		out, err = kcat("carol")
		t.Logf("kcat as carol: %v: %s", err, strings.TrimSpace(string(out)))
		if err == nil || !strings.Contains(strings.ToLower(string(out)), "authorization failed") {
			t.Errorf("kcat as carol reading %s: %v, want an authorization error:\n%s", partnershipTopic, err, out)
		}
		if strings.Contains(string(out), "alert-2-") {
			t.Errorf("kcat as carol got partnership records:\n%s", out)
		}
	})

	t.Run("quota", func(t *testing.T) {
		// ~30 MB more in the public topic, stored uncompressed as the
		// quota counts bytes as stored.
		const quota, recordSize, records = 2e6, 100_000, 300
		big := u.client(t, "operator", kgo.DisableIdempotentWrite(), kgo.ProducerBatchMaxBytes(1<<20),
			kgo.ProducerBatchCompression(kgo.NoCompression()))
		value := []byte(strings.Repeat("q", recordSize))
		for i := 0; i < records; i++ {
			big.Produce(ctx, &kgo.Record{Topic: publicTopic, Value: value}, func(_ *kgo.Record, err error) {
				if err != nil {
					t.Error(err)
				}
			})
		}
		if err := big.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		carol := "carol"
		altered, err := adm.AlterClientQuotas(ctx, []kadm.AlterClientQuotaEntry{{
			Entity: kadm.ClientQuotaEntity{{Type: "user", Name: &carol}},
			Ops:    []kadm.AlterClientQuotaOp{{Key: "consumer_byte_rate", Value: quota}},
		}})
		if err != nil || len(altered) != 1 || altered[0].Err != nil {
			t.Fatalf("AlterClientQuotas user=carol as operator: %v %+v", err, altered)
		}

		// Carol reads for 10 s, her rate taken over the last 8 (the first
		// second's worth comes at once); alice reads until she has it all.
		const total = records*recordSize + few*len("alert-1-0")
		type result struct {
			rate  float64
			bytes int
			err   error
		}
		consume := func(user string, window time.Duration) (res result) {
			cl := u.client(t, user, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{publicTopic: {0: kgo.NewOffset().At(0)}}),
				kgo.FetchMaxBytes(256<<10), kgo.FetchMaxPartitionBytes(256<<10))
			defer cl.Close()
			start := time.Now()
			var fromMark int
			var mark time.Time
			for res.bytes < total && time.Since(start) < window && res.err == nil {
				pctx, pcancel := context.WithTimeout(ctx, time.Second)
				fs := cl.PollFetches(pctx)
				pcancel()
				fs.EachRecord(func(r *kgo.Record) { res.bytes += len(r.Value) })
				fs.EachError(func(_ string, _ int32, err error) {
					if !errors.Is(err, context.DeadlineExceeded) && res.err == nil {
						res.err = err
					}
				})
				if window < time.Minute && mark.IsZero() && time.Since(start) >= 2*time.Second {
					mark, fromMark = time.Now(), res.bytes
				}
			}
			if mark.IsZero() {
				mark = start
			}
			res.rate = float64(res.bytes-fromMark) / time.Since(mark).Seconds()
			return res
		}
		var wg sync.WaitGroup
		var carolRes, aliceRes result
		wg.Add(2)
		go func() { defer wg.Done(); carolRes = consume("carol", 10*time.Second) }()
		go func() { defer wg.Done(); aliceRes = consume("alice", time.Hour) }()
		wg.Wait()
		t.Logf("carol: %.2f MB/s (%d bytes); alice: %.2f MB/s (%d bytes); carol's quota %.2f MB/s",
			carolRes.rate/1e6, carolRes.bytes, aliceRes.rate/1e6, aliceRes.bytes, quota/1e6)
		if carolRes.err != nil || aliceRes.err != nil {
			t.Fatalf("fetch errors: carol %v, alice %v", carolRes.err, aliceRes.err)
		}
		if carolRes.rate < 0.8*quota || carolRes.rate > 1.2*quota {
			t.Errorf("carol fetched at %.0f B/s, want %.0f within 20%%", carolRes.rate, quota)
		}
		if aliceRes.bytes != total || aliceRes.rate < 4*quota {
			t.Errorf("alice read %d bytes at %.0f B/s, want all %d at over 4x carol's quota", aliceRes.bytes, aliceRes.rate, total)
		}
	})
}
