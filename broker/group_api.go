package broker

import (
	"context"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// JoinGroup serves JoinGroup v0-9. It returns once the member's rebalance
// completes (or fails), or ctx ends. Metadata past memberMetadataMax or
// groupMetadataMax is refused (see group.go).
func (c *GroupCoordinator) JoinGroup(ctx context.Context, req *kmsg.JoinGroupRequest) *kmsg.JoinGroupResponse {
	resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
	resp.Generation = -1
	resp.MemberID = req.MemberID
	session := time.Duration(req.SessionTimeoutMillis) * time.Millisecond
	switch {
	case req.Group == "":
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp
	case session < c.cfg.MinSessionTimeout || session > c.cfg.MaxSessionTimeout:
		resp.ErrorCode = kerr.InvalidSessionTimeout.Code
		return resp
	case req.ProtocolType == "" || len(req.Protocols) == 0:
		resp.ErrorCode = kerr.InconsistentGroupProtocol.Code
		return resp
	case metadataBytes(req.Protocols) > memberMetadataMax:
		resp.ErrorCode = kerr.InvalidRequest.Code
		return resp
	}
	clientID, host := c.clientInfo(ctx)
	g := c.lockGroup(req.Group, req.MemberID == "")
	if g == nil {
		resp.ErrorCode = kerr.UnknownMemberID.Code
		return resp
	}
	replaces := req.MemberID
	if replaces == "" && req.InstanceID != nil {
		replaces = g.static[*req.InstanceID]
	}
	if g.metadataBytesLocked(replaces)+metadataBytes(req.Protocols) > groupMetadataMax {
		g.mu.Unlock()
		resp.ErrorCode = kerr.GroupMaxSizeReached.Code
		return resp
	}
	res, wait := g.joinLocked(req, clientID, host, c.now())
	g.mu.Unlock()
	if wait != nil {
		select {
		case res = <-wait:
		case <-ctx.Done():
			g.mu.Lock()
			for _, m := range g.members {
				if m.join == wait {
					m.join = nil // left to the rebalance timeout
				}
			}
			g.mu.Unlock()
			select {
			case res = <-wait: // answered meanwhile
			default:
				resp.ErrorCode = kerr.RebalanceInProgress.Code
				return resp
			}
		}
	}
	resp.ErrorCode = res.err
	resp.MemberID = res.memberID
	resp.Generation = res.generation
	if res.err == 0 {
		resp.ProtocolType = kmsg.StringPtr(req.ProtocolType)
		resp.Protocol = kmsg.StringPtr(res.protocol)
		resp.LeaderID = res.leader
		resp.Members = res.members
		resp.SkipAssignment = res.skip
	}
	return resp
}

// SyncGroup serves SyncGroup v0-5. The leader's call carries every member's
// assignment; everyone's call returns once the leader's has arrived.
func (c *GroupCoordinator) SyncGroup(ctx context.Context, req *kmsg.SyncGroupRequest) *kmsg.SyncGroupResponse {
	resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
	resp.MemberAssignment = []byte{}
	if req.Group == "" {
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp
	}
	g := c.lockGroup(req.Group, false)
	if g == nil {
		resp.ErrorCode = kerr.UnknownMemberID.Code
		return resp
	}
	res, wait := g.syncLocked(req, c.now())
	protocolType, protocol := g.protocolType, g.protocol
	g.mu.Unlock()
	if wait != nil {
		select {
		case res = <-wait:
		case <-ctx.Done():
			resp.ErrorCode = kerr.RebalanceInProgress.Code
			return resp
		}
	}
	resp.ErrorCode = res.err
	if res.err == 0 {
		resp.ProtocolType = kmsg.StringPtr(protocolType)
		resp.Protocol = kmsg.StringPtr(protocol)
		resp.MemberAssignment = res.assignment
	}
	return resp
}

// Heartbeat serves Heartbeat v0-4.
func (c *GroupCoordinator) Heartbeat(_ context.Context, req *kmsg.HeartbeatRequest) *kmsg.HeartbeatResponse {
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	if req.Group == "" {
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp
	}
	g := c.lockGroup(req.Group, false)
	if g == nil {
		resp.ErrorCode = kerr.UnknownMemberID.Code
		return resp
	}
	resp.ErrorCode = g.heartbeatLocked(req, c.now())
	g.mu.Unlock()
	return resp
}

// LeaveGroup serves LeaveGroup v0-5 (a batch of members from v3).
func (c *GroupCoordinator) LeaveGroup(_ context.Context, req *kmsg.LeaveGroupRequest) *kmsg.LeaveGroupResponse {
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	if req.Group == "" {
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp
	}
	leaving := req.Members
	if req.Version < 3 {
		leaving = []kmsg.LeaveGroupRequestMember{{MemberID: req.MemberID}}
	}
	g := c.lockGroup(req.Group, false)
	if g == nil {
		resp.ErrorCode = kerr.UnknownMemberID.Code
		if req.Version >= 3 {
			resp.ErrorCode = 0
			for _, l := range leaving {
				r := kmsg.NewLeaveGroupResponseMember()
				r.MemberID, r.InstanceID, r.ErrorCode = l.MemberID, l.InstanceID, kerr.UnknownMemberID.Code
				resp.Members = append(resp.Members, r)
			}
		}
		return resp
	}
	defer g.mu.Unlock()
	removed := false
	for _, l := range leaving {
		code, ok := g.leaveLocked(l.MemberID, l.InstanceID)
		removed = removed || ok
		if req.Version < 3 {
			resp.ErrorCode = code
			continue
		}
		r := kmsg.NewLeaveGroupResponseMember()
		r.MemberID, r.InstanceID, r.ErrorCode = l.MemberID, l.InstanceID, code
		resp.Members = append(resp.Members, r)
	}
	if removed && g.state != groupEmpty {
		g.prepareRebalanceLocked(c.now())
	}
	return resp
}

// ListGroups serves ListGroups v0-5.
func (c *GroupCoordinator) ListGroups(_ context.Context, req *kmsg.ListGroupsRequest) *kmsg.ListGroupsResponse {
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	for _, g := range c.allGroups() {
		g.mu.Lock()
		state, dead, protocolType := g.state, g.dead, g.protocolType
		g.mu.Unlock()
		if dead {
			continue
		}
		if len(req.StatesFilter) > 0 && !slices.ContainsFunc(req.StatesFilter, func(s string) bool { return equalFoldASCII(s, state.String()) }) {
			continue
		}
		if len(req.TypesFilter) > 0 && !slices.ContainsFunc(req.TypesFilter, func(s string) bool { return equalFoldASCII(s, "classic") }) {
			continue
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group = g.name
		lg.ProtocolType = protocolType
		lg.GroupState = state.String()
		lg.GroupType = "classic"
		resp.Groups = append(resp.Groups, lg)
	}
	return resp
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// DescribeGroups serves DescribeGroups v0-5. Member metadata and assignments
// are reported only for a Stable group, as Kafka does.
func (c *GroupCoordinator) DescribeGroups(_ context.Context, req *kmsg.DescribeGroupsRequest) *kmsg.DescribeGroupsResponse {
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, name := range req.Groups {
		dg := kmsg.NewDescribeGroupsResponseGroup()
		dg.Group = name
		dg.AuthorizedOperations = -2147483648 // not requested or not supported
		g := c.lockGroup(name, false)
		if g == nil {
			dg.State = groupDead.String()
			if req.Version >= 6 {
				dg.ErrorCode = kerr.GroupIDNotFound.Code
			}
			resp.Groups = append(resp.Groups, dg)
			continue
		}
		dg.State = g.state.String()
		dg.ProtocolType = g.protocolType
		stable := g.state == groupStable
		if stable {
			dg.Protocol = g.protocol
		}
		for _, m := range g.sortedMembers() {
			dm := kmsg.NewDescribeGroupsResponseGroupMember()
			dm.MemberID = m.id
			dm.InstanceID = m.instanceID
			dm.ClientID = m.clientID
			dm.ClientHost = m.clientHost
			if stable {
				dm.ProtocolMetadata = m.metadata(g.protocol)
				dm.MemberAssignment = g.assignmentOf(m)
			}
			dg.Members = append(dg.Members, dm)
		}
		g.mu.Unlock()
		resp.Groups = append(resp.Groups, dg)
	}
	return resp
}

// DeleteGroups serves DeleteGroups v0-2: an empty group is deleted with its
// committed offsets; a group with members is NON_EMPTY_GROUP.
func (c *GroupCoordinator) DeleteGroups(_ context.Context, req *kmsg.DeleteGroupsRequest) *kmsg.DeleteGroupsResponse {
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	for _, name := range req.Groups {
		dg := kmsg.NewDeleteGroupsResponseGroup()
		dg.Group = name
		g := c.lockGroup(name, false)
		switch {
		case name == "":
			dg.ErrorCode = kerr.InvalidGroupID.Code
		case g == nil:
			dg.ErrorCode = kerr.GroupIDNotFound.Code
		case g.state != groupEmpty || len(g.pending) > 0:
			dg.ErrorCode = kerr.NonEmptyGroup.Code
		default:
			c.removeGroupLocked(g)
		}
		if g != nil {
			g.mu.Unlock()
		}
		resp.Groups = append(resp.Groups, dg)
	}
	return resp
}
