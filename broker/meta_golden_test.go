package broker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/twmb/franz-go/pkg/kmsg"
)

var updateMeta = flag.Bool("update", false, "rewrite testdata/meta.golden from the current code")

const metaGolden = "testdata/meta.golden"

// TestMetaGolden pins the metadata store's format (doc.go, "Metadata
// keys"): it builds every key family through the public API, dumps the store
// and compares the dump with testdata/meta.golden. A change to a key or a
// value must be deliberate: go test -run MetaGolden -update, and doc.go
// updated to match. It also fails when the store holds a key family doc.go
// does not name, or doc.go names one the dump lacks.
func TestMetaGolden(t *testing.T) {
	dump := buildMetaDump(t)
	if *updateMeta {
		if err := os.MkdirAll(filepath.Dir(metaGolden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(metaGolden, dump.text, 0o644); err != nil {
			t.Fatal(err)
		}
	} else {
		want, err := os.ReadFile(metaGolden)
		if err != nil {
			t.Fatalf("%v (run with -update to create)", err)
		}
		if !bytes.Equal(dump.text, want) {
			t.Errorf("the metadata store differs from %s: the on-disk format changed "+
				"(update doc.go, then go test -run MetaGolden -update)\n%s",
				metaGolden, lineDiff(string(want), string(dump.text)))
		}
	}

	families, err := documentedKeyFamilies("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, k := range dump.keys {
		f, ok := families.match(k)
		if !ok {
			t.Errorf("key %s is in no family doc.go names (%v)", renderKey(k), families)
			continue
		}
		used[f.literal] = true
	}
	for _, f := range families {
		if !used[f.literal] {
			t.Errorf("doc.go names key family %q, which the golden store lacks: add it to the test or drop it from the doc", f.literal)
		}
	}
}

type metaDump struct {
	text []byte
	keys [][]byte
}

// buildMetaDump makes a broker with one topic of each kind, a consumer group
// with a member and committed offsets, and an idempotent producer's state,
// closes it and dumps its metadata store.
func buildMetaDump(t *testing.T) metaDump {
	t.Helper()
	// UTC: records hold times in the zone of the clock that wrote them.
	start := time.Date(2018, 7, 25, 4, 0, 0, 123_456_789, time.UTC)
	clk := &clock{t: start}
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.RetentionCheckInterval = time.Hour
	b, err := Open(cfg, nil, nil, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	gcfg := DefaultGroupConfig()
	gcfg.SweepInterval = time.Hour // no sweep runs during the test
	c, err := OpenGroupCoordinator(b, gcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetClientInfo(func(context.Context) (string, string) { return "ztf-archiver", "/192.0.2.7" })
	ctx := context.Background()

	const topicName = "ztf_20180725_programid1"
	clk.Advance(time.Second)
	if err := b.CreateTopic(context.Background(), topicName, 2, map[string]*string{"retention.ms": kmsg.StringPtr("604800000")}, false); err != nil {
		t.Fatal(err)
	}
	// IncrementalAlterConfigs rewrites the record with the new overrides.
	alter := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	alter.Name, alter.Value = "retention.bytes", kmsg.StringPtr("1073741824")
	if err := b.AlterTopicConfigs(context.Background(), topicName, []kmsg.IncrementalAlterConfigsRequestResourceConfig{alter}, false, false); err != nil {
		t.Fatal(err)
	}

	// A consumer group: one static member, Stable, with two commits.
	const groupName = "ztf-archive"
	clk.Advance(time.Second)
	join := joinReq(5, groupName, "", kmsg.StringPtr("archive-1"), "range")
	join.Protocols[0].Metadata = consumerMeta(topicName)
	jr := c.JoinGroup(ctx, join)
	wantCode(t, "JoinGroup", jr.ErrorCode, nil)
	memberID := jr.MemberID
	assign := kmsg.NewConsumerMemberAssignment()
	assign.Topics = []kmsg.ConsumerMemberAssignmentTopic{{Topic: topicName, Partitions: []int32{0, 1}}}
	sr := c.SyncGroup(ctx, syncReq(groupName, memberID, jr.Generation, kmsg.StringPtr("archive-1"),
		map[string][]byte{memberID: assign.AppendTo(nil)}))
	wantCode(t, "SyncGroup", sr.ErrorCode, nil)
	clk.Advance(time.Second)
	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Version = 8
	commit.Group, commit.Generation, commit.MemberID = groupName, jr.Generation, memberID
	commit.InstanceID = kmsg.StringPtr("archive-1")
	ct := kmsg.NewOffsetCommitRequestTopic()
	ct.Topic = topicName
	for p, meta := range []*string{kmsg.StringPtr("night 2018-07-25"), nil} {
		cp := kmsg.NewOffsetCommitRequestTopicPartition()
		cp.Partition, cp.Offset, cp.LeaderEpoch, cp.Metadata = int32(p), int64(100+p), 0, meta
		ct.Partitions = append(ct.Partitions, cp)
	}
	commit.Topics = append(commit.Topics, ct)
	for _, rt := range c.OffsetCommit(ctx, commit).Topics {
		for _, rp := range rt.Partitions {
			wantCode(t, fmt.Sprintf("OffsetCommit %s/%d", rt.Topic, rp.Partition), rp.ErrorCode, nil)
		}
	}

	// A client quota, as AlterClientQuotas stores it.
	if err := b.SetClientQuotas("client-id/ztf-slow", map[string]float64{"consumer_byte_rate": 2e6, "producer_byte_rate": 1e6}); err != nil {
		t.Fatal(err)
	}

	// An ACL, as CreateAcls stores it.
	authz, err := OpenAuthorizer(b.Meta(), DefaultAuthzConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := authz.AddACL(ACL{kmsg.ACLResourceTypeTopic, kmsg.ACLResourcePatternTypePrefixed, "ztf_", "Group:partners", "*",
		kmsg.ACLOperationRead, kmsg.ACLPermissionTypeAllow}); err != nil {
		t.Fatal(err)
	}

	// A user's SCRAM credential, as `ztfbroker user add` stores it.
	if err := b.SetScramCredential("alice", "SCRAM-SHA-256", []byte("salt"), 4096, bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)); err != nil {
		t.Fatal(err)
	}

	// An idempotent producer's state, written the way Produce writes it.
	clk.Advance(time.Second)
	ip := c.InitProducerID(ctx, kmsg.NewPtrInitProducerIDRequest())
	wantCode(t, "InitProducerID", ip.ErrorCode, nil)
	pid := ip.ProducerID
	for seq := int32(0); seq < 6; seq += 3 {
		raw := makeBatch(t, testBatch{baseTS: clk.Now().UnixMilli(), tsDeltas: []int64{0, 1, 2}, valueSize: 8, producerID: pid, sequence: seq})
		if _, _, err := b.Produce(ctx, topicName, 1, raw); err != nil {
			t.Fatal(err)
		}
	}

	// Random values, named in the dump by what they are.
	normalize := []string{b.ClusterID(), "<cluster id: 22 characters of base64url>", memberID, "archive-1-<32 hex digits>"}
	if !regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`).MatchString(b.ClusterID()) {
		t.Errorf("cluster id %q: want 22 characters of base64url", b.ClusterID())
	}
	if !regexp.MustCompile(`^archive-1-[0-9a-f]{32}$`).MatchString(memberID) {
		t.Errorf("member id %q: want the instance id, '-' and 32 hex digits", memberID)
	}
	for _, name := range b.TopicNames(context.Background()) {
		id, err := b.TopicID(name)
		if err != nil {
			t.Fatal(err)
		}
		normalize = append(normalize, hex.EncodeToString(id[:]), "<32 hex digits: id of "+name+">")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	return dumpMeta(t, filepath.Join(cfg.DataDir, "meta"), strings.NewReplacer(normalize...))
}

// dumpMeta lists every key of the pebble store in dir, in key order: the key
// as text (bytes outside printable ASCII as \xNN) and as hex, then the value:
// JSON indented (after checking it is stored compact, so the indentation
// hides nothing), printable text quoted, anything else hex.
func dumpMeta(t *testing.T, dir string, normalize *strings.Replacer) metaDump {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true, Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	var d metaDump
	var out bytes.Buffer
	out.WriteString("# ztfbroker metadata store (DataDir/meta), every key in key order; see doc.go.\n")
	out.WriteString("# Written by TestMetaGolden; regenerate with: go test ./broker -run MetaGolden -update\n")
	for it.First(); it.Valid(); it.Next() {
		k, v := append([]byte(nil), it.Key()...), it.Value()
		d.keys = append(d.keys, k)
		fmt.Fprintf(&out, "\nkey   %s\n", renderKey(k))
		fmt.Fprintf(&out, "hex   %s\n", hex.EncodeToString(k))
		var compact bytes.Buffer
		switch {
		case len(v) > 0 && v[0] == '{' && json.Compact(&compact, v) == nil:
			if !bytes.Equal(compact.Bytes(), v) {
				t.Errorf("value of %s is JSON but not compact", renderKey(k))
			}
			var indented bytes.Buffer
			_ = json.Indent(&indented, v, "      ", "  ")
			fmt.Fprintf(&out, "json  %s\n", normalize.Replace(indented.String()))
		case printable(v):
			fmt.Fprintf(&out, "text  %q\n", normalize.Replace(string(v)))
		default:
			fmt.Fprintf(&out, "bin   %s\n", hex.EncodeToString(v))
		}
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	d.text = out.Bytes()
	return d
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return len(b) > 0
}

// renderKey shows printable ASCII as itself and every other byte (and '\')
// as \xNN.
func renderKey(k []byte) string {
	var s strings.Builder
	for _, c := range k {
		if c > 0x20 && c < 0x7f && c != '\\' {
			s.WriteByte(c)
		} else {
			fmt.Fprintf(&s, `\x%02x`, c)
		}
	}
	return s.String()
}

// keyFamily is one line of doc.go's key table: the literal start of its keys
// and whether anything follows it.
type keyFamily struct {
	literal string
	open    bool // fields follow the literal
}

type keyFamilies []keyFamily

func (fs keyFamilies) String() string {
	var names []string
	for _, f := range fs {
		names = append(names, f.literal)
	}
	return strings.Join(names, ", ")
}

func (fs keyFamilies) match(k []byte) (keyFamily, bool) {
	var best keyFamily
	found := false
	for _, f := range fs {
		ok := string(k) == f.literal || (f.open && bytes.HasPrefix(k, []byte(f.literal)) && len(k) > len(f.literal))
		if ok && len(f.literal) >= len(best.literal) {
			best, found = f, true
		}
	}
	return best, found
}

// documentedKeyFamilies reads the key table of doc.go's "Metadata keys"
// section: its code lines (comment lines indented by a tab) that start with
// a key, a literal up to the first '<' then its fields.
func documentedKeyFamilies(path string) (keyFamilies, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	keyLine := regexp.MustCompile(`^//\t([a-z][a-z_]*/[^\s<]*)(<\S*)?\s`)
	var fs keyFamilies
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "// # ") {
			in = line == "// # Metadata keys"
			continue
		}
		if m := keyLine.FindStringSubmatch(line); in && m != nil {
			fs = append(fs, keyFamily{literal: m[1], open: m[2] != ""})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(fs) == 0 {
		return nil, fmt.Errorf("%s: no key table under \"# Metadata keys\"", path)
	}
	return fs, nil
}

// lineDiff lists the lines of got that differ from want, for the failure
// message.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var s strings.Builder
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			fmt.Fprintf(&s, "line %d:\n  want %s\n  got  %s\n", i+1, a, b)
		}
	}
	return s.String()
}
