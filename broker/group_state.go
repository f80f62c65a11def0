package broker

import (
	"bytes"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupState is a classic group's state, named as Kafka names it in
// ListGroups and DescribeGroups.
type groupState int8

const (
	groupEmpty groupState = iota
	groupPreparingRebalance
	groupCompletingRebalance
	groupStable
	groupDead
)

func (s groupState) String() string {
	switch s {
	case groupEmpty:
		return "Empty"
	case groupPreparingRebalance:
		return "PreparingRebalance"
	case groupCompletingRebalance:
		return "CompletingRebalance"
	case groupStable:
		return "Stable"
	default:
		return "Dead"
	}
}

// group is one consumer group. Every field is guarded by mu.
type group struct {
	c    *GroupCoordinator
	name string

	mu         sync.Mutex
	dead       bool // removed from the coordinator; look it up again
	persisted  bool // a group record exists in pebble
	state      groupState
	stateSince time.Time

	protocolType string
	protocol     string
	generation   int32
	leader       string
	seq          uint64 // join order: the longest-standing member leads

	members map[string]*groupMember
	// pending are member ids handed out with MEMBER_ID_REQUIRED (JoinGroup
	// v4+) and the deadline by which they must join with them.
	pending map[string]time.Time
	// static maps group.instance.id to the member id holding it.
	static map[string]string
	// awaitingSync are the members that got this generation's JoinGroup
	// answer but have not sent SyncGroup yet.
	awaitingSync map[string]bool

	rebalanceDeadline time.Time // PreparingRebalance: when laggards are dropped
	// delayedJoin holds a rebalance of an empty group open until its
	// deadline (group.initial.rebalance.delay.ms).
	delayedJoin  bool
	syncDeadline time.Time // CompletingRebalance: when non-syncers are dropped

	offsets map[groupTP]offsetCommit
}

type groupTP struct {
	topic     string
	partition int32
}

type offsetCommit offsetRecord

type groupMember struct {
	id                   string
	instanceID           *string
	clientID, clientHost string
	seq                  uint64

	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration
	protocolType     string
	protocols        []kmsg.JoinGroupRequestProtocol
	assignment       []byte

	// join and sync are set while the member's JoinGroup or SyncGroup
	// waits for the group; buffered, so the sender never blocks.
	join chan joinResult
	sync chan syncResult
	// deadline is when the session expires, unless the member waits in
	// join or sync (the rebalance timeout covers those).
	deadline time.Time
}

type joinResult struct {
	err        int16
	memberID   string
	generation int32
	protocol   string
	leader     string
	members    []kmsg.JoinGroupResponseMember
	skip       bool
}

type syncResult struct {
	err        int16
	assignment []byte
}

func newGroup(c *GroupCoordinator, name string) *group {
	return &group{
		c:          c,
		name:       name,
		stateSince: c.now(),
		members:    map[string]*groupMember{},
		pending:    map[string]time.Time{},
		static:     map[string]string{},
		offsets:    map[groupTP]offsetCommit{},
	}
}

// emptyConsumerAssignment is what a "consumer" group member gets when the
// leader assigned it nothing: a decodable empty ConsumerMemberAssignment, as
// some clients cannot decode zero bytes (kfake does the same).
var emptyConsumerAssignment = new(kmsg.ConsumerMemberAssignment).AppendTo(nil)

func (g *group) sortedMembers() []*groupMember {
	ms := make([]*groupMember, 0, len(g.members))
	for _, m := range g.members {
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].seq < ms[j].seq })
	return ms
}

func (g *group) setState(s groupState, now time.Time) {
	g.state = s
	g.stateSince = now
}

func (g *group) maxRebalanceTimeout() time.Duration {
	var d time.Duration
	for _, m := range g.members {
		d = max(d, m.rebalanceTimeout)
	}
	return d
}

// supportsProtocols reports whether protocols share a name with what every
// current member supports.
func (g *group) supportsProtocols(protocolType string, protocols []kmsg.JoinGroupRequestProtocol) bool {
	if len(g.members) == 0 {
		return true
	}
	if protocolType != g.protocolType {
		return false
	}
	for _, p := range protocols {
		all := true
		for _, m := range g.members {
			if !m.supports(p.Name) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func (m *groupMember) supports(name string) bool {
	for _, p := range m.protocols {
		if p.Name == name {
			return true
		}
	}
	return false
}

func (m *groupMember) metadata(name string) []byte {
	for _, p := range m.protocols {
		if p.Name == name {
			return p.Metadata
		}
	}
	return nil
}

func sameProtocols(a, b []kmsg.JoinGroupRequestProtocol) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || !bytes.Equal(a[i].Metadata, b[i].Metadata) {
			return false
		}
	}
	return true
}

// fencedLocked reports whether instanceID is held by another member id.
func (g *group) fencedLocked(instanceID *string, memberID string) bool {
	if instanceID == nil {
		return false
	}
	held, ok := g.static[*instanceID]
	return ok && held != memberID
}

// joinLocked handles one JoinGroup on g. It returns either an immediate
// answer or a channel on which the answer comes once the rebalance completes.
func (g *group) joinLocked(req *kmsg.JoinGroupRequest, clientID, host string, now time.Time) (joinResult, chan joinResult) {
	fail := func(code int16) (joinResult, chan joinResult) {
		return joinResult{err: code, memberID: req.MemberID, generation: -1}, nil
	}
	if g.state == groupDead {
		return fail(kerr.CoordinatorNotAvailable.Code)
	}
	if !g.supportsProtocols(req.ProtocolType, req.Protocols) {
		return fail(kerr.InconsistentGroupProtocol.Code)
	}
	session := time.Duration(req.SessionTimeoutMillis) * time.Millisecond
	rebalance := time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond
	if req.Version == 0 {
		rebalance = session
	}

	if req.MemberID == "" {
		if req.InstanceID != nil {
			if old, ok := g.static[*req.InstanceID]; ok {
				if m := g.members[old]; m != nil {
					return g.replaceStaticLocked(m, req, clientID, host, session, rebalance, now)
				}
				delete(g.static, *req.InstanceID)
			}
		}
		if len(g.members)+len(g.pending) >= g.c.cfg.MaxSize {
			return fail(kerr.GroupMaxSizeReached.Code)
		}
		id := newMemberID(clientID, req.InstanceID)
		// KIP-394: a dynamic member must come back with the id it was
		// given, so that a client that never learns it leaves no ghost.
		if req.Version >= 4 && req.InstanceID == nil {
			g.pending[id] = now.Add(session)
			return joinResult{err: kerr.MemberIDRequired.Code, memberID: id, generation: -1}, nil
		}
		m := &groupMember{id: id, instanceID: req.InstanceID}
		if req.InstanceID != nil {
			g.static[*req.InstanceID] = id
		}
		return g.addMemberLocked(m, req, clientID, host, session, rebalance, now)
	}

	if g.fencedLocked(req.InstanceID, req.MemberID) {
		return fail(kerr.FencedInstanceID.Code)
	}
	if _, ok := g.pending[req.MemberID]; ok {
		delete(g.pending, req.MemberID)
		m := &groupMember{id: req.MemberID, instanceID: req.InstanceID}
		if req.InstanceID != nil {
			g.static[*req.InstanceID] = m.id
		}
		return g.addMemberLocked(m, req, clientID, host, session, rebalance, now)
	}
	m := g.members[req.MemberID]
	if m == nil {
		return fail(kerr.UnknownMemberID.Code)
	}
	if req.InstanceID != nil && (m.instanceID == nil || *m.instanceID != *req.InstanceID) {
		return fail(kerr.FencedInstanceID.Code)
	}
	switch g.state {
	case groupPreparingRebalance:
		return g.updateMemberLocked(m, req, clientID, host, session, rebalance, now)
	case groupCompletingRebalance:
		if sameProtocols(m.protocols, req.Protocols) {
			// A retry of a join already answered: answer it again.
			return g.joinAnswerLocked(m), nil
		}
		return g.updateMemberLocked(m, req, clientID, host, session, rebalance, now)
	case groupStable:
		if m.id != g.leader && sameProtocols(m.protocols, req.Protocols) {
			m.deadline = now.Add(m.sessionTimeout)
			return g.joinAnswerLocked(m), nil
		}
		return g.updateMemberLocked(m, req, clientID, host, session, rebalance, now)
	default:
		return fail(kerr.UnknownMemberID.Code)
	}
}

func (m *groupMember) update(req *kmsg.JoinGroupRequest, clientID, host string, session, rebalance time.Duration) {
	m.clientID, m.clientHost = clientID, host
	m.sessionTimeout, m.rebalanceTimeout = session, rebalance
	m.protocolType = req.ProtocolType
	m.protocols = req.Protocols
}

func (g *group) addMemberLocked(m *groupMember, req *kmsg.JoinGroupRequest, clientID, host string, session, rebalance time.Duration, now time.Time) (joinResult, chan joinResult) {
	m.update(req, clientID, host, session, rebalance)
	g.seq++
	m.seq = g.seq
	if len(g.members) == 0 {
		g.protocolType = req.ProtocolType
	}
	g.members[m.id] = m
	return g.awaitJoinLocked(m, now)
}

func (g *group) updateMemberLocked(m *groupMember, req *kmsg.JoinGroupRequest, clientID, host string, session, rebalance time.Duration, now time.Time) (joinResult, chan joinResult) {
	m.update(req, clientID, host, session, rebalance)
	return g.awaitJoinLocked(m, now)
}

// awaitJoinLocked parks m in the join barrier and starts or advances the
// rebalance.
func (g *group) awaitJoinLocked(m *groupMember, now time.Time) (joinResult, chan joinResult) {
	if m.join != nil {
		// A second JoinGroup from the same member replaces the first.
		m.join <- joinResult{err: kerr.RebalanceInProgress.Code, memberID: m.id, generation: -1}
	}
	ch := make(chan joinResult, 1)
	m.join = ch
	g.prepareRebalanceLocked(now)
	return joinResult{}, ch
}

// replaceStaticLocked hands a static member's place to a new member id
// (KIP-345): the old instance is fenced, its assignment kept. A Stable group
// whose member rejoins with the same protocols does not rebalance.
func (g *group) replaceStaticLocked(old *groupMember, req *kmsg.JoinGroupRequest, clientID, host string, session, rebalance time.Duration, now time.Time) (joinResult, chan joinResult) {
	fenced := joinResult{err: kerr.FencedInstanceID.Code, memberID: old.id, generation: -1}
	if old.join != nil {
		old.join <- fenced
		old.join = nil
	}
	if old.sync != nil {
		old.sync <- syncResult{err: kerr.FencedInstanceID.Code}
		old.sync = nil
	}
	sameProtos := sameProtocols(old.protocols, req.Protocols)
	m := &groupMember{
		id:         newMemberID(clientID, req.InstanceID),
		instanceID: req.InstanceID,
		seq:        old.seq,
		assignment: old.assignment,
	}
	m.update(req, clientID, host, session, rebalance)
	delete(g.members, old.id)
	delete(g.awaitingSync, old.id)
	g.members[m.id] = m
	g.static[*req.InstanceID] = m.id
	wasLeader := g.leader == old.id
	if wasLeader {
		g.leader = m.id
	}
	if g.state == groupStable && sameProtos {
		m.deadline = now.Add(m.sessionTimeout)
		g.persistLocked()
		res := g.joinAnswerLocked(m)
		// KIP-814: the leader learns it need not assign again. Before
		// v9 it gets the member list and assigns; the Stable group
		// keeps the assignment it has.
		res.skip = wasLeader && req.Version >= 9
		return res, nil
	}
	return g.awaitJoinLocked(m, now)
}

// joinAnswerLocked is the JoinGroup answer for m in the current generation.
func (g *group) joinAnswerLocked(m *groupMember) joinResult {
	res := joinResult{
		memberID:   m.id,
		generation: g.generation,
		protocol:   g.protocol,
		leader:     g.leader,
	}
	if m.id == g.leader {
		for _, o := range g.sortedMembers() {
			res.members = append(res.members, kmsg.JoinGroupResponseMember{
				MemberID:         o.id,
				InstanceID:       o.instanceID,
				ProtocolMetadata: o.metadata(g.protocol),
			})
		}
	}
	return res
}

// prepareRebalanceLocked moves g to PreparingRebalance (answering members
// waiting in sync with REBALANCE_IN_PROGRESS) and completes the join barrier
// if everyone is already in it.
func (g *group) prepareRebalanceLocked(now time.Time) {
	if g.state == groupCompletingRebalance {
		for _, m := range g.members {
			m.assignment = nil
			if m.sync != nil {
				m.sync <- syncResult{err: kerr.RebalanceInProgress.Code}
				m.sync = nil
				m.deadline = now.Add(m.sessionTimeout)
			}
		}
		g.awaitingSync = nil
	}
	if g.state != groupPreparingRebalance {
		timeout := g.maxRebalanceTimeout()
		g.delayedJoin = g.state == groupEmpty && g.c.cfg.InitialRebalanceDelay > 0
		if g.delayedJoin {
			timeout = min(timeout, g.c.cfg.InitialRebalanceDelay)
		}
		g.setState(groupPreparingRebalance, now)
		g.rebalanceDeadline = now.Add(timeout)
		g.c.metrics.rebalance()
	}
	g.maybeCompleteJoinLocked(now)
}

// maybeCompleteJoinLocked completes the join barrier once every member and
// every member id handed out is in it.
func (g *group) maybeCompleteJoinLocked(now time.Time) {
	if g.state != groupPreparingRebalance || len(g.pending) > 0 || g.delayedJoin {
		return
	}
	for _, m := range g.members {
		if m.join == nil {
			return
		}
	}
	g.completeJoinLocked(now)
}

// completeJoinLocked ends PreparingRebalance: members not in the barrier are
// dropped, the generation advances, a protocol is chosen and every member
// gets its JoinGroup answer (the leader with everyone's metadata).
func (g *group) completeJoinLocked(now time.Time) {
	g.delayedJoin = false
	for _, m := range g.members {
		if m.join == nil {
			g.removeMemberLocked(m, kerr.UnknownMemberID.Code)
		}
	}
	g.generation++
	if len(g.members) == 0 {
		g.protocol = ""
		g.leader = ""
		g.setState(groupEmpty, now)
		g.persistLocked()
		return
	}
	members := g.sortedMembers()
	if g.members[g.leader] == nil {
		g.leader = members[0].id
	}
	g.protocol = g.selectProtocolLocked(members)
	g.setState(groupCompletingRebalance, now)
	g.syncDeadline = now.Add(g.maxRebalanceTimeout())
	g.awaitingSync = map[string]bool{}
	for _, m := range members {
		m.assignment = nil
		g.awaitingSync[m.id] = true
	}
	g.persistLocked()
	for _, m := range members {
		m.join <- g.joinAnswerLocked(m)
		m.join = nil
		m.deadline = now.Add(m.sessionTimeout)
	}
}

// selectProtocolLocked is Kafka's vote: among the protocols every member
// supports, each member votes for its most preferred; ties go to the
// leader's preference.
func (g *group) selectProtocolLocked(members []*groupMember) string {
	votes := map[string]int{}
	for _, m := range members {
		for _, p := range m.protocols {
			if g.supportsProtocols(g.protocolType, []kmsg.JoinGroupRequestProtocol{p}) {
				votes[p.Name]++
				break
			}
		}
	}
	best, bestVotes := "", 0
	for _, p := range g.members[g.leader].protocols {
		if v := votes[p.Name]; v > bestVotes {
			best, bestVotes = p.Name, v
		}
	}
	return best
}

// removeMemberLocked drops m, answering a parked request with code.
func (g *group) removeMemberLocked(m *groupMember, code int16) {
	if m.join != nil {
		m.join <- joinResult{err: code, memberID: m.id, generation: -1}
		m.join = nil
	}
	if m.sync != nil {
		m.sync <- syncResult{err: code}
		m.sync = nil
	}
	delete(g.members, m.id)
	delete(g.awaitingSync, m.id)
	if m.instanceID != nil && g.static[*m.instanceID] == m.id {
		delete(g.static, *m.instanceID)
	}
	if g.leader == m.id {
		g.leader = ""
	}
}

// syncLocked handles one SyncGroup on g.
func (g *group) syncLocked(req *kmsg.SyncGroupRequest, now time.Time) (syncResult, chan syncResult) {
	fail := func(code int16) (syncResult, chan syncResult) { return syncResult{err: code}, nil }
	if g.fencedLocked(req.InstanceID, req.MemberID) {
		return fail(kerr.FencedInstanceID.Code)
	}
	m := g.members[req.MemberID]
	if m == nil {
		return fail(kerr.UnknownMemberID.Code)
	}
	if req.Generation != g.generation {
		return fail(kerr.IllegalGeneration.Code)
	}
	if (req.ProtocolType != nil && *req.ProtocolType != g.protocolType) || (req.Protocol != nil && *req.Protocol != g.protocol) {
		return fail(kerr.InconsistentGroupProtocol.Code)
	}
	switch g.state {
	case groupPreparingRebalance:
		return fail(kerr.RebalanceInProgress.Code)
	case groupCompletingRebalance:
		if m.sync != nil {
			m.sync <- syncResult{err: kerr.RebalanceInProgress.Code}
		}
		ch := make(chan syncResult, 1)
		m.sync = ch
		delete(g.awaitingSync, m.id)
		if m.id == g.leader {
			g.completeSyncLocked(req.GroupAssignment, now)
		}
		return syncResult{}, ch
	case groupStable:
		m.deadline = now.Add(m.sessionTimeout)
		return syncResult{assignment: g.assignmentOf(m)}, nil
	default:
		return fail(kerr.UnknownMemberID.Code)
	}
}

func (g *group) assignmentOf(m *groupMember) []byte {
	if len(m.assignment) == 0 {
		if g.protocolType == "consumer" {
			return emptyConsumerAssignment
		}
		return []byte{}
	}
	return m.assignment
}

// completeSyncLocked stores the leader's assignments, persists the group and
// answers every member waiting in sync: the group is Stable.
func (g *group) completeSyncLocked(assignments []kmsg.SyncGroupRequestGroupAssignment, now time.Time) {
	for _, a := range assignments {
		if m := g.members[a.MemberID]; m != nil {
			m.assignment = a.MemberAssignment
		}
	}
	g.setState(groupStable, now)
	g.awaitingSync = nil
	g.persistLocked()
	for _, m := range g.members {
		if m.sync != nil {
			m.sync <- syncResult{assignment: g.assignmentOf(m)}
			m.sync = nil
			m.deadline = now.Add(m.sessionTimeout)
		}
	}
}

// heartbeatLocked handles one Heartbeat on g.
func (g *group) heartbeatLocked(req *kmsg.HeartbeatRequest, now time.Time) int16 {
	if g.fencedLocked(req.InstanceID, req.MemberID) {
		return kerr.FencedInstanceID.Code
	}
	m := g.members[req.MemberID]
	if m == nil {
		return kerr.UnknownMemberID.Code
	}
	if req.Generation != g.generation {
		return kerr.IllegalGeneration.Code
	}
	m.deadline = now.Add(m.sessionTimeout)
	switch g.state {
	case groupPreparingRebalance:
		return kerr.RebalanceInProgress.Code
	case groupCompletingRebalance, groupStable:
		return 0
	default:
		return kerr.UnknownMemberID.Code
	}
}

// leaveLocked removes one member (by member id, or by instance id for a
// static member) and reports its code; the caller rebalances.
func (g *group) leaveLocked(memberID string, instanceID *string) (int16, bool) {
	if instanceID != nil {
		held, ok := g.static[*instanceID]
		if !ok {
			return kerr.UnknownMemberID.Code, false
		}
		if memberID != "" && memberID != held {
			return kerr.FencedInstanceID.Code, false
		}
		memberID = held
	}
	if _, ok := g.pending[memberID]; ok {
		delete(g.pending, memberID)
		return 0, true
	}
	m := g.members[memberID]
	if m == nil {
		return kerr.UnknownMemberID.Code, false
	}
	g.removeMemberLocked(m, kerr.UnknownMemberID.Code)
	return 0, true
}

// tickLocked fires g's passed deadlines.
func (g *group) tickLocked(now time.Time) {
	for id, d := range g.pending {
		if !now.Before(d) {
			delete(g.pending, id)
		}
	}
	switch g.state {
	case groupPreparingRebalance:
		if !now.Before(g.rebalanceDeadline) {
			g.completeJoinLocked(now)
			return
		}
		g.maybeCompleteJoinLocked(now) // a pending member may have expired
	case groupCompletingRebalance:
		if !now.Before(g.syncDeadline) && len(g.awaitingSync) > 0 {
			for id := range g.awaitingSync {
				if m := g.members[id]; m != nil {
					g.removeMemberLocked(m, kerr.RebalanceInProgress.Code)
				}
			}
			g.prepareRebalanceLocked(now)
			return
		}
	}
	expired := false
	for _, m := range g.members {
		if m.join == nil && m.sync == nil && !now.Before(m.deadline) {
			g.removeMemberLocked(m, kerr.UnknownMemberID.Code)
			expired = true
		}
	}
	if expired && g.state != groupEmpty {
		g.prepareRebalanceLocked(now)
	}
}
