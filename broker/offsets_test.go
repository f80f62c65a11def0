package broker

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func commitReq(group, memberID string, gen int32, topic string, partition int32, offset int64, metadata *string) *kmsg.OffsetCommitRequest {
	r := kmsg.NewPtrOffsetCommitRequest()
	r.Version = 8
	r.Group, r.MemberID, r.Generation = group, memberID, gen
	p := kmsg.NewOffsetCommitRequestTopicPartition()
	p.Partition, p.Offset, p.Metadata, p.LeaderEpoch = partition, offset, metadata, 3
	r.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: topic, Partitions: []kmsg.OffsetCommitRequestTopicPartition{p}}}
	return r
}

// fetchV fetches group's offsets of topic's partitions at a version.
func fetchV(c *GroupCoordinator, version int16, group, topic string, partitions ...int32) map[int32]kmsg.OffsetFetchResponseTopicPartition {
	r := kmsg.NewPtrOffsetFetchRequest()
	r.Version = version
	out := map[int32]kmsg.OffsetFetchResponseTopicPartition{}
	if version >= 8 {
		rg := kmsg.NewOffsetFetchRequestGroup()
		rg.Group = group
		if partitions != nil {
			rg.Topics = []kmsg.OffsetFetchRequestGroupTopic{{Topic: topic, Partitions: partitions}}
		}
		r.Groups = []kmsg.OffsetFetchRequestGroup{rg}
		for _, t := range c.OffsetFetch(context.Background(), r).Groups[0].Topics {
			for _, p := range t.Partitions {
				if t.Topic == topic {
					out[p.Partition] = kmsg.OffsetFetchResponseTopicPartition{Partition: p.Partition, Offset: p.Offset, LeaderEpoch: p.LeaderEpoch, Metadata: p.Metadata, ErrorCode: p.ErrorCode}
				}
			}
		}
		return out
	}
	r.Group = group
	if partitions != nil {
		r.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: topic, Partitions: partitions}}
	}
	for _, t := range c.OffsetFetch(context.Background(), r).Topics {
		for _, p := range t.Partitions {
			if t.Topic == topic {
				out[p.Partition] = p
			}
		}
	}
	return out
}

func TestOffsetCommitFetchDurable(t *testing.T) {
	known := func(topic string, p int32) (int64, error) {
		if topic != "alerts" || p < 0 || p > 3 {
			return 0, fmt.Errorf("no %s/%d: %w", topic, p, kerr.UnknownTopicOrPartition)
		}
		return 100, nil
	}
	tc := newTestCoordinator(t, known)
	c := tc.GroupCoordinator
	meta := kmsg.StringPtr("night=2026-11-28")
	r := commitReq("ops", "", -1, "alerts", 2, 42, meta)
	r.Topics = append(r.Topics, kmsg.OffsetCommitRequestTopic{Topic: "nope", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1}}})
	long := strings.Repeat("x", offsetMetadataMax+1)
	r.Topics[0].Partitions = append(r.Topics[0].Partitions, kmsg.OffsetCommitRequestTopicPartition{Partition: 1, Offset: 7, Metadata: &long})
	resp := c.OffsetCommit(context.Background(), r)
	wantCode(t, "commit", resp.Topics[0].Partitions[0].ErrorCode, nil)
	wantCode(t, "metadata too large", resp.Topics[0].Partitions[1].ErrorCode, kerr.OffsetMetadataTooLarge)
	wantCode(t, "unknown topic", resp.Topics[1].Partitions[0].ErrorCode, kerr.UnknownTopicOrPartition)
	wantCode(t, "unknown group, live generation", c.OffsetCommit(context.Background(), commitReq("nobody", "m", 3, "alerts", 0, 1, nil)).Topics[0].Partitions[0].ErrorCode, kerr.IllegalGeneration)

	check := func(when string) {
		t.Helper()
		for _, v := range []int16{1, 5, 7, 8} {
			got := fetchV(c, v, "ops", "alerts", 2, 3)
			if p := got[2]; p.Offset != 42 || p.Metadata == nil || *p.Metadata != *meta {
				t.Fatalf("%s v%d partition 2: %+v", when, v, p)
			}
			if v >= 5 && got[2].LeaderEpoch != 3 {
				t.Fatalf("%s v%d leader epoch %d", when, v, got[2].LeaderEpoch)
			}
			if p := got[3]; p.Offset != -1 || p.ErrorCode != 0 {
				t.Fatalf("%s v%d uncommitted partition: %+v", when, v, p)
			}
			if v >= 2 {
				if all := fetchV(c, v, "ops", "alerts"); len(all) != 1 || all[2].Offset != 42 {
					t.Fatalf("%s v%d all topics: %+v", when, v, all)
				}
			}
		}
		if got := fetchV(c, 8, "unknown-group", "alerts", 0); got[0].Offset != -1 || got[0].ErrorCode != 0 {
			t.Fatalf("%s unknown group: %+v", when, got[0])
		}
	}
	check("before restart")
	tc.reopen()
	c = tc.GroupCoordinator
	check("after restart")

	// Lag at scrape time: high watermark 100, committed 42.
	reg := prometheus.NewRegistry()
	if _, err := newGroupMetrics(c, reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var lag float64 = -1
	for _, mf := range mfs {
		if mf.GetName() != "ztfbroker_group_lag" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["group"] == "ops" && labels["topic"] == "alerts" && labels["partition"] == "2" {
				lag = m.GetGauge().GetValue()
			}
		}
	}
	if lag != 58 {
		t.Fatalf("ztfbroker_group_lag{group=ops,topic=alerts,partition=2} = %v, want 58", lag)
	}
}

func TestOffsetRetentionEmptyGroups(t *testing.T) {
	tc := newTestCoordinator(t, nil)
	c := tc.GroupCoordinator
	// A standalone group: offsets expire by commit time.
	wantCode(t, "old commit", c.OffsetCommit(context.Background(), commitReq("solo", "", -1, "t", 0, 1, nil)).Topics[0].Partitions[0].ErrorCode, nil)
	tc.clk.Advance(6 * 24 * time.Hour)
	wantCode(t, "new commit", c.OffsetCommit(context.Background(), commitReq("solo", "", -1, "t", 1, 1, nil)).Topics[0].Partitions[0].ErrorCode, nil)
	// A managed group that empties: offsets expire 7 days after it emptied.
	a, aj := joinNew(t, c, "managed", "range")
	ja := recv(t, aj)
	recv(t, asyncSync(c, syncReq("managed", a, ja.Generation, nil, nil)))
	wantCode(t, "member commit", c.OffsetCommit(context.Background(), commitReq("managed", a, ja.Generation, "t", 0, 9, nil)).Topics[0].Partitions[0].ErrorCode, nil)
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Group, leave.MemberID = "managed", a
	wantCode(t, "leave", c.LeaveGroup(context.Background(), leave).ErrorCode, nil)

	tc.clk.Advance(24*time.Hour + time.Minute)
	c.Tick()
	if got := fetchV(c, 8, "solo", "t", 0, 1); got[0].Offset != -1 || got[1].Offset != 1 {
		t.Fatalf("solo after 7 days: %+v", got)
	}
	if got := fetchV(c, 8, "managed", "t", 0); got[0].Offset != 9 {
		t.Fatalf("managed group lost offsets a day after emptying: %+v", got)
	}
	tc.clk.Advance(6 * 24 * time.Hour)
	c.Tick()
	tc.reopen()
	c = tc.GroupCoordinator
	if got := fetchV(c, 8, "managed", "t", 0); got[0].Offset != -1 {
		t.Fatalf("managed group offsets kept past retention: %+v", got)
	}
	if got := fetchV(c, 8, "solo", "t", 1); got[1].Offset != -1 {
		t.Fatalf("solo offsets kept past retention: %+v", got)
	}
	if lr := c.ListGroups(context.Background(), kmsg.NewPtrListGroupsRequest()); len(lr.Groups) != 0 {
		t.Fatalf("expired groups still listed: %+v", lr.Groups)
	}
}

func TestOffsetDelete(t *testing.T) {
	tc := newTestCoordinator(t, nil)
	c := tc.GroupCoordinator
	// A member subscribed to "t" holds the group open.
	r := joinReq(9, "od", "", nil, "range")
	first := c.JoinGroup(context.Background(), r)
	r = joinReq(9, "od", first.MemberID, nil, "range")
	r.Protocols[0].Metadata = consumerMeta("t")
	j := recv(t, asyncJoin(c, r))
	recv(t, asyncSync(c, syncReq("od", j.MemberID, j.Generation, nil, nil)))
	for _, topic := range []string{"t", "u"} {
		wantCode(t, "commit "+topic, c.OffsetCommit(context.Background(), commitReq("od", j.MemberID, j.Generation, topic, 0, 5, nil)).Topics[0].Partitions[0].ErrorCode, nil)
	}
	del := kmsg.NewPtrOffsetDeleteRequest()
	del.Group = "od"
	del.Topics = []kmsg.OffsetDeleteRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}}, {Topic: "u", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}}}
	resp := c.OffsetDelete(context.Background(), del)
	wantCode(t, "delete subscribed", resp.Topics[0].Partitions[0].ErrorCode, kerr.GroupSubscribedToTopic)
	wantCode(t, "delete unsubscribed", resp.Topics[1].Partitions[0].ErrorCode, nil)
	tc.reopen()
	c = tc.GroupCoordinator
	if got := fetchV(c, 8, "od", "u", 0); got[0].Offset != -1 {
		t.Fatalf("deleted offset back after restart: %+v", got)
	}
	if got := fetchV(c, 8, "od", "t", 0); got[0].Offset != 5 {
		t.Fatalf("subscribed offset: %+v", got)
	}
	del.Group = "none"
	wantCode(t, "unknown group", c.OffsetDelete(context.Background(), del).ErrorCode, kerr.GroupIDNotFound)
}

func TestOffsetKeyRoundTrip(t *testing.T) {
	for _, tt := range []struct{ group, topic string }{{"g", "t"}, {"a/b", "c/d"}, {"", "x"}, {strings.Repeat("g", 300), "ztf_20261128_programid1"}} {
		g, topic, p, ok := parseOffsetKey(offsetKey(tt.group, tt.topic, 12345))
		if !ok || g != tt.group || topic != tt.topic || p != 12345 {
			t.Fatalf("%q %q: got %q %q %d %v", tt.group, tt.topic, g, topic, p, ok)
		}
	}
}

// TestOffsetsSurviveSIGKILL commits offsets (and takes producer ids) in a
// child process, kills it with SIGKILL mid-stream, and checks that
// everything acknowledged is there after reopening the store.
func TestOffsetsSurviveSIGKILL(t *testing.T) {
	if dir := os.Getenv("ZTF_OFFSETS_CHILD"); dir != "" {
		offsetsChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestOffsetsSurviveSIGKILL$")
	cmd.Env = append(os.Environ(), "ZTF_OFFSETS_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	acked := int64(-1)
	for lines.Scan() {
		n, err := strconv.ParseInt(strings.TrimPrefix(lines.Text(), "acked "), 10, 64)
		if err != nil {
			continue
		}
		acked = n
		if acked == 50 {
			cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	cmd.Wait()
	if acked < 50 {
		t.Fatalf("child acknowledged only %d commits", acked)
	}
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cfg := DefaultGroupConfig()
	c, err := NewGroupCoordinator(db, cfg, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := fetchV(c, 8, "killed", "t", 0)
	if got[0].Offset < acked {
		t.Fatalf("committed offset %d after SIGKILL, but %d was acknowledged", got[0].Offset, acked)
	}
	id, _ := initPID(t, c, 4)
	if id <= acked+1 { // ids 1..acked+1 were handed out
		t.Fatalf("producer id %d handed out again after SIGKILL", id)
	}
}

// offsetsChild commits offset 0, 1, 2, ... (and takes a producer id for
// each), printing each acknowledgement, until killed.
func offsetsChild(dir string) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		panic(err)
	}
	c, err := NewGroupCoordinator(db, DefaultGroupConfig(), nil, nil, nil, nil)
	if err != nil {
		panic(err)
	}
	for i := int64(0); ; i++ {
		resp := c.OffsetCommit(context.Background(), commitReq("killed", "", -1, "t", 0, i, nil))
		if resp.Topics[0].Partitions[0].ErrorCode != 0 {
			panic("commit refused")
		}
		r := kmsg.NewPtrInitProducerIDRequest()
		if c.InitProducerID(context.Background(), r).ErrorCode != 0 {
			panic("InitProducerID refused")
		}
		fmt.Fprintf(os.Stdout, "acked %d\n", i)
	}
}

func TestOffsetRetentionUnsubscribedTopics(t *testing.T) {
	tc := newTestCoordinator(t, nil)
	c := tc.GroupCoordinator
	r := joinReq(9, "nightly", "", nil, "range")
	first := c.JoinGroup(context.Background(), r)
	r = joinReq(9, "nightly", first.MemberID, nil, "range")
	r.Protocols[0].Metadata = consumerMeta("ztf_20261129")
	j := recv(t, asyncJoin(c, r))
	recv(t, asyncSync(c, syncReq("nightly", j.MemberID, j.Generation, nil, nil)))
	for _, topic := range []string{"ztf_20261128", "ztf_20261129"} {
		wantCode(t, "commit "+topic, c.OffsetCommit(context.Background(), commitReq("nightly", j.MemberID, j.Generation, topic, 0, 5, nil)).Topics[0].Partitions[0].ErrorCode, nil)
	}
	for i := 0; i < 8; i++ { // a week of heartbeats
		tc.clk.Advance(24 * time.Hour)
		wantCode(t, "heartbeat", heartbeat(c, "nightly", j.MemberID, j.Generation, nil), nil)
		c.Tick()
	}
	if got := fetchV(c, 8, "nightly", "ztf_20261128", 0); got[0].Offset != -1 {
		t.Fatalf("offset of an unsubscribed topic kept past retention: %+v", got)
	}
	if got := fetchV(c, 8, "nightly", "ztf_20261129", 0); got[0].Offset != 5 {
		t.Fatalf("offset of the subscribed topic expired: %+v", got)
	}
}
