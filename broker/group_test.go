package broker

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fakeClock is a clock the test moves; the coordinator's deadlines fire on
// the next Tick after they pass.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// testCoordinator is a coordinator over a pebble store in dir that can be
// reopened to check durability.
type testCoordinator struct {
	*GroupCoordinator
	t   *testing.T
	dir string
	db  *pebble.DB
	clk *fakeClock
	hwm HighWatermarkFunc
	cfg GroupConfig
}

func newTestCoordinator(t *testing.T, hwm HighWatermarkFunc) *testCoordinator {
	t.Helper()
	return newTestCoordinatorWith(t, hwm, nil)
}

func newTestCoordinatorWith(t *testing.T, hwm HighWatermarkFunc, mutate func(*GroupConfig)) *testCoordinator {
	t.Helper()
	cfg := DefaultGroupConfig()
	cfg.SweepInterval = time.Hour // tests Tick by hand
	if mutate != nil {
		mutate(&cfg)
	}
	tc := &testCoordinator{t: t, dir: t.TempDir(), clk: newFakeClock(), hwm: hwm, cfg: cfg}
	tc.open()
	t.Cleanup(tc.close)
	return tc
}

// quietPebble drops pebble's own log lines (WAL replay on every reopen).
type quietPebble struct{}

func (quietPebble) Infof(string, ...any)         {}
func (quietPebble) Errorf(string, ...any)        {}
func (quietPebble) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }

func (tc *testCoordinator) open() {
	tc.t.Helper()
	db, err := pebble.Open(tc.dir, &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		tc.t.Fatal(err)
	}
	c, err := NewGroupCoordinator(db, tc.cfg, nil, nil, tc.clk.Now, tc.hwm)
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.db, tc.GroupCoordinator = db, c
}

func (tc *testCoordinator) close() {
	if tc.db == nil {
		return
	}
	tc.GroupCoordinator.Close()
	tc.db.Close()
	tc.db = nil
}

// reopen closes and reopens the store, as a restart does.
func (tc *testCoordinator) reopen() {
	tc.close()
	tc.open()
}

func consumerMeta(topics ...string) []byte {
	m := kmsg.NewConsumerMemberMetadata()
	m.Topics = topics
	return m.AppendTo(nil)
}

func joinReq(version int16, group, memberID string, instanceID *string, protocols ...string) *kmsg.JoinGroupRequest {
	r := kmsg.NewPtrJoinGroupRequest()
	r.Version = version
	r.Group = group
	r.MemberID = memberID
	r.InstanceID = instanceID
	r.SessionTimeoutMillis = 10000
	r.RebalanceTimeoutMillis = 30000
	r.ProtocolType = "consumer"
	for _, p := range protocols {
		r.Protocols = append(r.Protocols, kmsg.JoinGroupRequestProtocol{Name: p, Metadata: []byte("meta-" + p)})
	}
	return r
}

// asyncJoin runs a JoinGroup that may wait for the group, and returns once
// it is answered or parked in the join barrier, so that tests order their
// requests.
func asyncJoin(c *GroupCoordinator, r *kmsg.JoinGroupRequest) <-chan *kmsg.JoinGroupResponse {
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	go func() { ch <- c.JoinGroup(context.Background(), r) }()
	return settle(c, r.Group, r.MemberID, ch, func(m *groupMember) bool { return m.join != nil })
}

func asyncSync(c *GroupCoordinator, r *kmsg.SyncGroupRequest) <-chan *kmsg.SyncGroupResponse {
	ch := make(chan *kmsg.SyncGroupResponse, 1)
	go func() { ch <- c.SyncGroup(context.Background(), r) }()
	return settle(c, r.Group, r.MemberID, ch, func(m *groupMember) bool { return m.sync != nil })
}

// settle waits until ch has an answer or member memberID of group is
// parked (per parked), for at most 5 s.
func settle[T any](c *GroupCoordinator, group, memberID string, ch chan T, parked func(*groupMember) bool) <-chan T {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		select {
		case v := <-ch:
			ch <- v
			return ch
		default:
		}
		if memberID == "" {
			continue
		}
		if g := c.lookup(group); g != nil {
			g.mu.Lock()
			m := g.members[memberID]
			done := m != nil && parked(m)
			g.mu.Unlock()
			if done {
				return ch
			}
		}
	}
	return ch
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("no answer within 5s")
		panic("unreachable")
	}
}

func notYet[T any](t *testing.T, ch <-chan T) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("answered too early: %+v", v)
	case <-time.After(50 * time.Millisecond):
	}
}

func wantCode(t *testing.T, what string, got int16, want *kerr.Error) {
	t.Helper()
	var w int16
	if want != nil {
		w = want.Code
	}
	if got != w {
		t.Fatalf("%s: error %v, want %v", what, kerr.ErrorForCode(got), want)
	}
}

func syncReq(group, memberID string, gen int32, instanceID *string, assign map[string][]byte) *kmsg.SyncGroupRequest {
	r := kmsg.NewPtrSyncGroupRequest()
	r.Version = 5
	r.Group, r.MemberID, r.Generation, r.InstanceID = group, memberID, gen, instanceID
	for id, a := range assign {
		r.GroupAssignment = append(r.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: id, MemberAssignment: a})
	}
	return r
}

func heartbeat(c *GroupCoordinator, group, memberID string, gen int32, instanceID *string) int16 {
	r := kmsg.NewPtrHeartbeatRequest()
	r.Version = 4
	r.Group, r.MemberID, r.Generation, r.InstanceID = group, memberID, gen, instanceID
	return c.Heartbeat(context.Background(), r).ErrorCode
}

// joinNew joins a dynamic member the v4+ way: MEMBER_ID_REQUIRED, then
// again with the id. It returns the second join's pending answer.
func joinNew(t *testing.T, c *GroupCoordinator, group string, protocols ...string) (string, <-chan *kmsg.JoinGroupResponse) {
	t.Helper()
	first := c.JoinGroup(context.Background(), joinReq(9, group, "", nil, protocols...))
	wantCode(t, "first join", first.ErrorCode, kerr.MemberIDRequired)
	if first.MemberID == "" {
		t.Fatal("MEMBER_ID_REQUIRED without a member id")
	}
	return first.MemberID, asyncJoin(c, joinReq(9, group, first.MemberID, nil, protocols...))
}

func stateOf(t *testing.T, c *GroupCoordinator, group string) string {
	t.Helper()
	r := kmsg.NewPtrDescribeGroupsRequest()
	r.Version = 5
	r.Groups = []string{group}
	return c.DescribeGroups(context.Background(), r).Groups[0].State
}

func TestGroupTwoMembersRebalance(t *testing.T) {
	tc := newTestCoordinator(t, nil)
	c := tc.GroupCoordinator
	a, aj := joinNew(t, c, "g", "range", "roundrobin")
	ja := recv(t, aj)
	wantCode(t, "join a", ja.ErrorCode, nil)
	if ja.Generation != 1 || ja.LeaderID != a || len(ja.Members) != 1 || *ja.Protocol != "range" {
		t.Fatalf("first generation: %+v", ja)
	}
	sa := recv(t, asyncSync(c, syncReq("g", a, 1, nil, map[string][]byte{a: []byte("A1")})))
	wantCode(t, "sync a", sa.ErrorCode, nil)
	if string(sa.MemberAssignment) != "A1" || stateOf(t, c, "g") != "Stable" {
		t.Fatalf("sync a: %q in %s", sa.MemberAssignment, stateOf(t, c, "g"))
	}

	// B only speaks roundrobin: the group must switch to it.
	b, bj := joinNew(t, c, "g", "roundrobin")
	notYet(t, bj)
	wantCode(t, "a heartbeat during rebalance", heartbeat(c, "g", a, 1, nil), kerr.RebalanceInProgress)
	aj = asyncJoin(c, joinReq(9, "g", a, nil, "range", "roundrobin"))
	ja, jb := recv(t, aj), recv(t, bj)
	if ja.Generation != 2 || jb.Generation != 2 || ja.LeaderID != a || jb.LeaderID != a {
		t.Fatalf("second generation: a %+v b %+v", ja, jb)
	}
	if *ja.Protocol != "roundrobin" || len(ja.Members) != 2 || len(jb.Members) != 0 {
		t.Fatalf("protocol %s, leader sees %d members, follower %d", *ja.Protocol, len(ja.Members), len(jb.Members))
	}
	for _, m := range ja.Members {
		if !bytes.Equal(m.ProtocolMetadata, []byte("meta-roundrobin")) {
			t.Fatalf("member %s metadata %q", m.MemberID, m.ProtocolMetadata)
		}
	}
	wantCode(t, "old generation heartbeat", heartbeat(c, "g", a, 1, nil), kerr.IllegalGeneration)
	wantCode(t, "unknown member heartbeat", heartbeat(c, "g", "nobody", 2, nil), kerr.UnknownMemberID)
	commit := commitReq("g", a, 2, "t", 0, 10, nil)
	wantCode(t, "commit while completing", c.OffsetCommit(context.Background(), commit).Topics[0].Partitions[0].ErrorCode, kerr.RebalanceInProgress)

	// The follower syncs first and waits; the leader assigns B nothing.
	sb := asyncSync(c, syncReq("g", b, 2, nil, nil))
	notYet(t, sb)
	sa = recv(t, asyncSync(c, syncReq("g", a, 2, nil, map[string][]byte{a: []byte("A2")})))
	rb := recv(t, sb)
	wantCode(t, "sync b", rb.ErrorCode, nil)
	if string(sa.MemberAssignment) != "A2" || !bytes.Equal(rb.MemberAssignment, emptyConsumerAssignment) {
		t.Fatalf("assignments a %q b %q", sa.MemberAssignment, rb.MemberAssignment)
	}
	wantCode(t, "commit stable", c.OffsetCommit(context.Background(), commit).Topics[0].Partitions[0].ErrorCode, nil)
	wantCode(t, "commit old generation", c.OffsetCommit(context.Background(), commitReq("g", a, 1, "t", 0, 10, nil)).Topics[0].Partitions[0].ErrorCode, kerr.IllegalGeneration)
	wantCode(t, "sync old generation", c.SyncGroup(context.Background(), syncReq("g", b, 1, nil, nil)).ErrorCode, kerr.IllegalGeneration)

	// B leaves: A is told to rejoin and forms generation 3 alone.
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Version = 5
	leave.Group = "g"
	leave.Members = []kmsg.LeaveGroupRequestMember{{MemberID: b}, {MemberID: "ghost"}}
	lr := c.LeaveGroup(context.Background(), leave)
	wantCode(t, "leave b", lr.Members[0].ErrorCode, nil)
	wantCode(t, "leave ghost", lr.Members[1].ErrorCode, kerr.UnknownMemberID)
	wantCode(t, "a after b left", heartbeat(c, "g", a, 2, nil), kerr.RebalanceInProgress)
	ja = recv(t, asyncJoin(c, joinReq(9, "g", a, nil, "range", "roundrobin")))
	if ja.Generation != 3 || *ja.Protocol != "range" {
		t.Fatalf("third generation: %+v", ja)
	}
}

func TestGroupEmptyAssignmentOtherProtocolType(t *testing.T) {
	tc := newTestCoordinator(t, nil)
	c := tc.GroupCoordinator
	r := joinReq(3, "conn", "", nil, "p") // v3: no MEMBER_ID_REQUIRED
	r.ProtocolType = "connect"
	j := recv(t, asyncJoin(c, r))
	wantCode(t, "join v3", j.ErrorCode, nil)
	s := c.SyncGroup(context.Background(), syncReq("conn", j.MemberID, j.Generation, nil, nil))
	wantCode(t, "sync", s.ErrorCode, nil)
	if s.MemberAssignment == nil || len(s.MemberAssignment) != 0 {
		t.Fatalf("assignment %v, want empty bytes", s.MemberAssignment)
	}
	// A consumer-type member cannot join a connect group.
	bad := c.JoinGroup(context.Background(), joinReq(9, "conn", "", nil, "p"))
	wantCode(t, "wrong protocol type", bad.ErrorCode, kerr.InconsistentGroupProtocol)
}

func TestGroupStaticMemberRejoin(t *testing.T) {
	tc := newTestCoordinator(t, nil)
	c := tc.GroupCoordinator
	inst := kmsg.StringPtr("night-1")
	j := recv(t, asyncJoin(c, joinReq(5, "s", "", inst, "range")))
	wantCode(t, "static join", j.ErrorCode, nil) // no MEMBER_ID_REQUIRED for static members
	old := j.MemberID
	s := c.SyncGroup(context.Background(), syncReq("s", old, j.Generation, inst, map[string][]byte{old: []byte("P0")}))
	wantCode(t, "sync", s.ErrorCode, nil)

	// The process restarts: same instance id, no member id.
	j2 := recv(t, asyncJoin(c, joinReq(5, "s", "", inst, "range")))
	wantCode(t, "static rejoin", j2.ErrorCode, nil)
	if j2.MemberID == old || j2.Generation != j.Generation {
		t.Fatalf("rejoin: member %s (old %s), generation %d (was %d)", j2.MemberID, old, j2.Generation, j.Generation)
	}
	if st := stateOf(t, c, "s"); st != "Stable" {
		t.Fatalf("static rejoin rebalanced: %s", st)
	}
	s2 := c.SyncGroup(context.Background(), syncReq("s", j2.MemberID, j2.Generation, inst, nil))
	if string(s2.MemberAssignment) != "P0" {
		t.Fatalf("assignment after rejoin %q, want the kept P0", s2.MemberAssignment)
	}
	wantCode(t, "old instance heartbeat", heartbeat(c, "s", old, j.Generation, inst), kerr.FencedInstanceID)
	wantCode(t, "old instance commit", c.OffsetCommit(context.Background(), func() *kmsg.OffsetCommitRequest {
		r := commitReq("s", old, j.Generation, "t", 0, 1, nil)
		r.InstanceID = inst
		return r
	}()).Topics[0].Partitions[0].ErrorCode, kerr.FencedInstanceID)
	wantCode(t, "new instance heartbeat", heartbeat(c, "s", j2.MemberID, j2.Generation, inst), nil)

	// v9 leader rejoin without change: told to skip assignment.
	j3 := recv(t, asyncJoin(c, joinReq(9, "s", "", inst, "range")))
	if !j3.SkipAssignment || j3.LeaderID != j3.MemberID {
		t.Fatalf("v9 static leader rejoin: %+v", j3)
	}

	// Static leave by instance id, with a stale member id: fenced.
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Version = 4
	leave.Group = "s"
	leave.Members = []kmsg.LeaveGroupRequestMember{{MemberID: old, InstanceID: inst}}
	wantCode(t, "stale static leave", c.LeaveGroup(context.Background(), leave).Members[0].ErrorCode, kerr.FencedInstanceID)
	leave.Members = []kmsg.LeaveGroupRequestMember{{InstanceID: inst}}
	wantCode(t, "static leave", c.LeaveGroup(context.Background(), leave).Members[0].ErrorCode, nil)
	if st := stateOf(t, c, "s"); st != "Empty" {
		t.Fatalf("after the only member left: %s", st)
	}
}

func TestGroupSessionExpiry(t *testing.T) {
	tc := newTestCoordinator(t, nil)
	c := tc.GroupCoordinator
	a, aj := joinNew(t, c, "e", "range")
	recv(t, aj)
	b, bj := joinNew(t, c, "e", "range")
	aj = asyncJoin(c, joinReq(9, "e", a, nil, "range"))
	ja, jb := recv(t, aj), recv(t, bj)
	sb := asyncSync(c, syncReq("e", b, jb.Generation, nil, nil))
	recv(t, asyncSync(c, syncReq("e", a, ja.Generation, nil, nil)))
	recv(t, sb)

	// A heartbeats, B goes silent past its 10 s session.
	for i := 0; i < 4; i++ {
		tc.clk.Advance(3 * time.Second)
		wantCode(t, "a heartbeat", heartbeat(c, "e", a, ja.Generation, nil), nil)
		c.Tick()
	}
	wantCode(t, "expired b", heartbeat(c, "e", b, jb.Generation, nil), kerr.UnknownMemberID)
	wantCode(t, "a told to rejoin", heartbeat(c, "e", a, ja.Generation, nil), kerr.RebalanceInProgress)
	ja2 := recv(t, asyncJoin(c, joinReq(9, "e", a, nil, "range")))
	if ja2.Generation != ja.Generation+1 || len(ja2.Members) != 1 {
		t.Fatalf("after expiry: %+v", ja2)
	}
	recv(t, asyncSync(c, syncReq("e", a, ja2.Generation, nil, nil)))

	// A goes silent too: the group empties.
	tc.clk.Advance(11 * time.Second)
	c.Tick()
	if st := stateOf(t, c, "e"); st != "Empty" {
		t.Fatalf("state %s, want Empty", st)
	}
}

func TestGroupRebalanceTimeoutDropsLaggard(t *testing.T) {
	tc := newTestCoordinator(t, nil)
	c := tc.GroupCoordinator
	a, aj := joinNew(t, c, "r", "range")
	ja := recv(t, aj)
	recv(t, asyncSync(c, syncReq("r", a, ja.Generation, nil, nil)))
	b, bj := joinNew(t, c, "r", "range")
	aj = asyncJoin(c, joinReq(9, "r", a, nil, "range"))
	recv(t, aj)
	jb := recv(t, bj)
	sa := asyncSync(c, syncReq("r", a, jb.Generation, nil, nil))
	recv(t, asyncSync(c, syncReq("r", b, jb.Generation, nil, nil)))
	recv(t, sa)

	// C joins; A rejoins, B never does (it keeps heartbeating though).
	_, cj := joinNew(t, c, "r", "range")
	aj = asyncJoin(c, joinReq(9, "r", a, nil, "range"))
	tc.clk.Advance(20 * time.Second)
	wantCode(t, "b heartbeat", heartbeat(c, "r", b, jb.Generation, nil), kerr.RebalanceInProgress)
	c.Tick()
	notYet(t, aj)
	tc.clk.Advance(11 * time.Second) // past the 30 s rebalance timeout
	c.Tick()
	ja, jc := recv(t, aj), recv(t, cj)
	if ja.Generation != jb.Generation+1 || jc.Generation != ja.Generation || len(ja.Members) != 2 {
		t.Fatalf("after rebalance timeout: a %+v c %+v", ja, jc)
	}
	wantCode(t, "laggard b", heartbeat(c, "r", b, jb.Generation, nil), kerr.UnknownMemberID)
	wantCode(t, "laggard b rejoin", c.JoinGroup(context.Background(), joinReq(9, "r", b, nil, "range")).ErrorCode, kerr.UnknownMemberID)
}

func TestGroupSyncTimeoutDropsMemberThatNeverSyncs(t *testing.T) {
	tc := newTestCoordinator(t, nil)
	c := tc.GroupCoordinator
	a, aj := joinNew(t, c, "st", "range")
	ja := recv(t, aj)
	recv(t, asyncSync(c, syncReq("st", a, ja.Generation, nil, nil)))
	b, bj := joinNew(t, c, "st", "range")
	aj = asyncJoin(c, joinReq(9, "st", a, nil, "range"))
	ja, jb := recv(t, aj), recv(t, bj)
	// B syncs and waits; the leader A never syncs.
	sb := asyncSync(c, syncReq("st", b, jb.Generation, nil, nil))
	tc.clk.Advance(31 * time.Second)
	c.Tick()
	wantCode(t, "b's pending sync", recv(t, sb).ErrorCode, kerr.RebalanceInProgress)
	wantCode(t, "a removed", heartbeat(c, "st", a, ja.Generation, nil), kerr.UnknownMemberID)
	jb2 := recv(t, asyncJoin(c, joinReq(9, "st", b, nil, "range")))
	if jb2.LeaderID != b || jb2.Generation != jb.Generation+1 {
		t.Fatalf("b alone: %+v", jb2)
	}
}

func TestGroupStateSurvivesRestart(t *testing.T) {
	tc := newTestCoordinator(t, nil)
	a, aj := joinNew(t, tc.GroupCoordinator, "d", "range")
	ja := recv(t, aj)
	recv(t, asyncSync(tc.GroupCoordinator, syncReq("d", a, ja.Generation, nil, map[string][]byte{a: []byte("A")})))
	tc.reopen()
	c := tc.GroupCoordinator
	if st := stateOf(t, c, "d"); st != "Stable" {
		t.Fatalf("after restart: %s", st)
	}
	wantCode(t, "heartbeat after restart", heartbeat(c, "d", a, ja.Generation, nil), nil)
	s := c.SyncGroup(context.Background(), syncReq("d", a, ja.Generation, nil, nil))
	if string(s.MemberAssignment) != "A" {
		t.Fatalf("assignment after restart %q", s.MemberAssignment)
	}
	// A new member makes the next generation follow the restored one.
	_, bj := joinNew(t, c, "d", "range")
	ja2 := recv(t, asyncJoin(c, joinReq(9, "d", a, nil, "range")))
	recv(t, bj)
	if ja2.Generation != ja.Generation+1 {
		t.Fatalf("generation %d after restart, want %d", ja2.Generation, ja.Generation+1)
	}
}

func TestGroupJoinValidation(t *testing.T) {
	tc := newTestCoordinator(t, nil)
	c := tc.GroupCoordinator
	r := joinReq(9, "", "", nil, "range")
	wantCode(t, "empty group id", c.JoinGroup(context.Background(), r).ErrorCode, kerr.InvalidGroupID)
	r = joinReq(9, "v", "", nil, "range")
	r.SessionTimeoutMillis = 10
	wantCode(t, "session timeout", c.JoinGroup(context.Background(), r).ErrorCode, kerr.InvalidSessionTimeout)
	r = joinReq(9, "v", "", nil)
	wantCode(t, "no protocols", c.JoinGroup(context.Background(), r).ErrorCode, kerr.InconsistentGroupProtocol)
	wantCode(t, "unknown member", c.JoinGroup(context.Background(), joinReq(9, "v", "who", nil, "range")).ErrorCode, kerr.UnknownMemberID)
	wantCode(t, "sync unknown group", c.SyncGroup(context.Background(), syncReq("v", "who", 1, nil, nil)).ErrorCode, kerr.UnknownMemberID)
	c.Tick()
	lr := c.ListGroups(context.Background(), kmsg.NewPtrListGroupsRequest())
	if len(lr.Groups) != 0 {
		t.Fatalf("groups left behind by refused joins: %+v", lr.Groups)
	}
}

func TestGroupJoinCancelled(t *testing.T) {
	tc := newTestCoordinator(t, nil)
	c := tc.GroupCoordinator
	a, aj := joinNew(t, c, "x", "range")
	ja := recv(t, aj)
	recv(t, asyncSync(c, syncReq("x", a, ja.Generation, nil, nil)))
	// B's JoinGroup waits for A, then its connection closes.
	first := c.JoinGroup(context.Background(), joinReq(9, "x", "", nil, "range"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *kmsg.JoinGroupResponse, 1)
	go func() { done <- c.JoinGroup(ctx, joinReq(9, "x", first.MemberID, nil, "range")) }()
	notYet(t, done)
	cancel()
	wantCode(t, "cancelled join", recv(t, done).ErrorCode, kerr.RebalanceInProgress)
	// A rejoins; B is gone by the rebalance timeout.
	aj = asyncJoin(c, joinReq(9, "x", a, nil, "range"))
	tc.clk.Advance(31 * time.Second)
	c.Tick()
	if ja2 := recv(t, aj); len(ja2.Members) != 1 {
		t.Fatalf("members after cancelled join: %d", len(ja2.Members))
	}
}

func TestGroupListDescribeDelete(t *testing.T) {
	tc := newTestCoordinator(t, nil)
	c := tc.GroupCoordinator
	a, aj := joinNew(t, c, "live", "range")
	ja := recv(t, aj)
	recv(t, asyncSync(c, syncReq("live", a, ja.Generation, nil, map[string][]byte{a: []byte("X")})))
	wantCode(t, "simple commit", c.OffsetCommit(context.Background(), commitReq("idle", "", -1, "t", 0, 5, nil)).Topics[0].Partitions[0].ErrorCode, nil)

	lr := c.ListGroups(context.Background(), kmsg.NewPtrListGroupsRequest())
	if len(lr.Groups) != 2 || lr.Groups[0].Group != "idle" || lr.Groups[0].GroupState != "Empty" || lr.Groups[1].GroupState != "Stable" || lr.Groups[1].ProtocolType != "consumer" {
		t.Fatalf("list: %+v", lr.Groups)
	}
	lreq := kmsg.NewPtrListGroupsRequest()
	lreq.Version = 4
	lreq.StatesFilter = []string{"Stable"}
	if lr := c.ListGroups(context.Background(), lreq); len(lr.Groups) != 1 || lr.Groups[0].Group != "live" {
		t.Fatalf("list stable: %+v", lr.Groups)
	}

	dr := kmsg.NewPtrDescribeGroupsRequest()
	dr.Version = 5
	dr.Groups = []string{"live", "nope"}
	d := c.DescribeGroups(context.Background(), dr)
	if g := d.Groups[0]; g.State != "Stable" || g.Protocol != "range" || len(g.Members) != 1 || string(g.Members[0].MemberAssignment) != "X" || string(g.Members[0].ProtocolMetadata) != "meta-range" {
		t.Fatalf("describe live: %+v", g)
	}
	if g := d.Groups[1]; g.State != "Dead" || g.ErrorCode != 0 {
		t.Fatalf("describe unknown: %+v", g)
	}

	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Groups = []string{"live", "idle", "nope"}
	dres := c.DeleteGroups(context.Background(), del)
	wantCode(t, "delete live", dres.Groups[0].ErrorCode, kerr.NonEmptyGroup)
	wantCode(t, "delete idle", dres.Groups[1].ErrorCode, nil)
	wantCode(t, "delete unknown", dres.Groups[2].ErrorCode, kerr.GroupIDNotFound)
	tc.reopen()
	if lr := tc.ListGroups(context.Background(), kmsg.NewPtrListGroupsRequest()); len(lr.Groups) != 1 {
		t.Fatalf("deleted group back after restart: %+v", lr.Groups)
	}
}

func TestGroupInitialRebalanceDelay(t *testing.T) {
	tc := newTestCoordinatorWith(t, nil, func(c *GroupConfig) { c.InitialRebalanceDelay = 3 * time.Second })
	c := tc.GroupCoordinator
	_, aj := joinNew(t, c, "late", "range")
	_, bj := joinNew(t, c, "late", "range")
	notYet(t, aj)
	tc.clk.Advance(2 * time.Second)
	c.Tick()
	notYet(t, bj)
	tc.clk.Advance(time.Second)
	c.Tick()
	ja, jb := recv(t, aj), recv(t, bj)
	if ja.Generation != 1 || jb.Generation != 1 || len(ja.Members)+len(jb.Members) != 2 {
		t.Fatalf("one generation for both: a %+v b %+v", ja, jb)
	}
}

func TestGroupRestartMidRebalance(t *testing.T) {
	tc := newTestCoordinator(t, nil)
	a, aj := joinNew(t, tc.GroupCoordinator, "mid", "range")
	ja := recv(t, aj) // CompletingRebalance: nobody synced yet
	tc.reopen()
	c := tc.GroupCoordinator
	if st := stateOf(t, c, "mid"); st != "PreparingRebalance" {
		t.Fatalf("restored mid-rebalance group: %s", st)
	}
	wantCode(t, "heartbeat", heartbeat(c, "mid", a, ja.Generation, nil), kerr.RebalanceInProgress)
	ja2 := recv(t, asyncJoin(c, joinReq(9, "mid", a, nil, "range")))
	if ja2.Generation != ja.Generation+1 || ja2.LeaderID != a {
		t.Fatalf("rejoin after restart: %+v", ja2)
	}
}

// TestGroupChurn runs members that join, sync, heartbeat, commit and leave
// at random, reacting to errors as clients do, to shake out deadlocks and
// fencing mistakes under concurrency (KAFKA-NOTES trap 8).
func TestGroupChurn(t *testing.T) {
	tc := newTestCoordinator(t, nil)
	c := tc.GroupCoordinator
	ctx := context.Background()
	stop := time.Now().Add(time.Second)
	var wg sync.WaitGroup
	var stable atomic.Int64
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed))
			id := ""
			for time.Now().Before(stop) {
				j := c.JoinGroup(ctx, joinReq(9, "churn", id, nil, "range"))
				switch j.ErrorCode {
				case kerr.MemberIDRequired.Code:
					id = j.MemberID
					continue
				case 0:
				default:
					if j.ErrorCode == kerr.UnknownMemberID.Code {
						id = ""
					}
					continue
				}
				id = j.MemberID
				var assign map[string][]byte
				if j.LeaderID == id {
					assign = map[string][]byte{}
					for _, m := range j.Members {
						assign[m.MemberID] = []byte(m.MemberID)
					}
				}
				s := c.SyncGroup(ctx, syncReq("churn", id, j.Generation, nil, assign))
				if s.ErrorCode == kerr.UnknownMemberID.Code {
					id = ""
				}
				if s.ErrorCode != 0 {
					continue
				}
				if string(s.MemberAssignment) != id && !bytes.Equal(s.MemberAssignment, emptyConsumerAssignment) {
					t.Errorf("member %s got %q", id, s.MemberAssignment)
				}
				stable.Add(1)
				for k := 0; k < 3; k++ {
					code := heartbeat(c, "churn", id, j.Generation, nil)
					if code == 0 {
						code = c.OffsetCommit(ctx, commitReq("churn", id, j.Generation, "t", 0, int64(k), nil)).Topics[0].Partitions[0].ErrorCode
					}
					if code == kerr.UnknownMemberID.Code {
						id = ""
					}
					if code != 0 {
						if code != kerr.RebalanceInProgress.Code && code != kerr.UnknownMemberID.Code && code != kerr.IllegalGeneration.Code {
							t.Errorf("unexpected %v", kerr.ErrorForCode(code))
						}
						break
					}
				}
				if rng.Intn(4) == 0 {
					leave := kmsg.NewPtrLeaveGroupRequest()
					leave.Version = 3
					leave.Group = "churn"
					leave.Members = []kmsg.LeaveGroupRequestMember{{MemberID: id}}
					c.LeaveGroup(ctx, leave)
					id = ""
				}
			}
			if id != "" {
				leave := kmsg.NewPtrLeaveGroupRequest()
				leave.Group, leave.MemberID = "churn", id
				c.LeaveGroup(ctx, leave)
			}
		}(int64(i))
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("members deadlocked")
	}
	if stable.Load() == 0 {
		t.Fatal("no member ever got an assignment")
	}
	if st := stateOf(t, c, "churn"); st != "Empty" {
		t.Fatalf("after everyone left: %s", st)
	}
}
