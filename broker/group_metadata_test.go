package broker

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// bigJoin is a JoinGroup whose protocols carry metadata of the given sizes.
func bigJoin(group, memberID string, sizes ...int) *kmsg.JoinGroupRequest {
	r := joinReq(9, group, memberID, nil)
	for i, n := range sizes {
		r.Protocols = append(r.Protocols, kmsg.JoinGroupRequestProtocol{
			Name: fmt.Sprintf("p%d", i), Metadata: bytes.Repeat([]byte{'m'}, n)})
	}
	return r
}

func TestGroupJoinMemberMetadataCap(t *testing.T) {
	c := newTestCoordinator(t, nil).GroupCoordinator
	for _, tc := range []struct {
		name  string
		sizes []int
		want  *kerr.Error
	}{
		{"one protocol past the cap", []int{memberMetadataMax + 1}, kerr.InvalidRequest},
		{"protocols together past the cap", []int{memberMetadataMax / 2, memberMetadataMax/2 + 1}, kerr.InvalidRequest},
		{"at the cap", []int{memberMetadataMax}, kerr.MemberIDRequired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := c.JoinGroup(context.Background(), bigJoin("g", "", tc.sizes...))
			wantCode(t, "join", resp.ErrorCode, tc.want)
		})
	}
}

func TestGroupJoinGroupMetadataCap(t *testing.T) {
	c := newTestCoordinator(t, nil).GroupCoordinator
	fit := groupMetadataMax / memberMetadataMax
	var first string
	for i := range fit {
		id := c.JoinGroup(context.Background(), bigJoin("g", "", memberMetadataMax)).MemberID
		if i == 0 {
			first = id
		}
		asyncJoin(c, bigJoin("g", id, memberMetadataMax)) // parks in the rebalance
	}
	c.mu.Lock()
	g := c.groups["g"]
	c.mu.Unlock()
	g.mu.Lock()
	members, held := len(g.members), g.metadataBytesLocked("")
	g.mu.Unlock()
	if members != fit || held != groupMetadataMax {
		t.Fatalf("group holds %d members, %d bytes of metadata; want %d, %d", members, held, fit, groupMetadataMax)
	}

	resp := c.JoinGroup(context.Background(), bigJoin("g", "", memberMetadataMax))
	wantCode(t, "join past the group's metadata cap", resp.ErrorCode, kerr.GroupMaxSizeReached)
	resp = c.JoinGroup(context.Background(), bigJoin("g", "", 100))
	wantCode(t, "a small member once the group is full", resp.ErrorCode, kerr.GroupMaxSizeReached)

	// A member joining again replaces its own metadata: not refused.
	select {
	case resp := <-asyncJoin(c, bigJoin("g", first, memberMetadataMax)):
		if resp.ErrorCode == kerr.GroupMaxSizeReached.Code {
			t.Fatal("a member's rejoin counted its old metadata against the group")
		}
	case <-time.After(100 * time.Millisecond): // parked in the rebalance: admitted
	}
}
