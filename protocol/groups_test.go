package protocol

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// stubGroups answers every group key with an empty response at the
// request's version, and a fixed producer id.
type stubGroups struct{}

func (stubGroups) JoinGroup(ctx context.Context, r *kmsg.JoinGroupRequest) *kmsg.JoinGroupResponse {
	resp := r.ResponseKind().(*kmsg.JoinGroupResponse)
	id, host := ClientInfo(ctx)
	resp.MemberID = id + " " + host // to see what Groups is told
	return resp
}
func (stubGroups) SyncGroup(_ context.Context, r *kmsg.SyncGroupRequest) *kmsg.SyncGroupResponse {
	return r.ResponseKind().(*kmsg.SyncGroupResponse)
}
func (stubGroups) Heartbeat(_ context.Context, r *kmsg.HeartbeatRequest) *kmsg.HeartbeatResponse {
	resp := r.ResponseKind().(*kmsg.HeartbeatResponse)
	resp.ErrorCode = 27 // REBALANCE_IN_PROGRESS, to see it pass through
	return resp
}
func (stubGroups) LeaveGroup(_ context.Context, r *kmsg.LeaveGroupRequest) *kmsg.LeaveGroupResponse {
	return r.ResponseKind().(*kmsg.LeaveGroupResponse)
}
func (stubGroups) OffsetCommit(_ context.Context, r *kmsg.OffsetCommitRequest) *kmsg.OffsetCommitResponse {
	return r.ResponseKind().(*kmsg.OffsetCommitResponse)
}
func (stubGroups) OffsetFetch(_ context.Context, r *kmsg.OffsetFetchRequest) *kmsg.OffsetFetchResponse {
	return r.ResponseKind().(*kmsg.OffsetFetchResponse)
}
func (stubGroups) ListGroups(_ context.Context, r *kmsg.ListGroupsRequest) *kmsg.ListGroupsResponse {
	return r.ResponseKind().(*kmsg.ListGroupsResponse)
}
func (stubGroups) DescribeGroups(_ context.Context, r *kmsg.DescribeGroupsRequest) *kmsg.DescribeGroupsResponse {
	return r.ResponseKind().(*kmsg.DescribeGroupsResponse)
}
func (stubGroups) DeleteGroups(_ context.Context, r *kmsg.DeleteGroupsRequest) *kmsg.DeleteGroupsResponse {
	return r.ResponseKind().(*kmsg.DeleteGroupsResponse)
}
func (stubGroups) OffsetDelete(_ context.Context, r *kmsg.OffsetDeleteRequest) *kmsg.OffsetDeleteResponse {
	return r.ResponseKind().(*kmsg.OffsetDeleteResponse)
}
func (stubGroups) InitProducerID(_ context.Context, r *kmsg.InitProducerIDRequest) *kmsg.InitProducerIDResponse {
	resp := r.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = 42, 0
	return resp
}

func TestGroupKeys(t *testing.T) {
	ts := startServer(t, Config{}, stubGroups{})
	r := rawRoundTrip(t, ts.addr, kmsg.NewPtrApiVersionsRequest()).(*kmsg.ApiVersionsResponse)
	want := map[int16][2]int16{8: {2, 9}, 9: {1, 8}, 11: {0, 9}, 12: {0, 4}, 13: {0, 5}, 14: {0, 5},
		15: {0, 5}, 16: {0, 5}, 22: {0, 4}, 42: {0, 2}, 47: {0, 0}}
	for _, k := range r.ApiKeys {
		if w, ok := want[k.ApiKey]; ok {
			if w != [2]int16{k.MinVersion, k.MaxVersion} {
				t.Errorf("key %d advertised %d-%d, want %v", k.ApiKey, k.MinVersion, k.MaxVersion, w)
			}
			delete(want, k.ApiKey)
		}
	}
	if len(want) > 0 {
		t.Errorf("not advertised: %v", want)
	}
	for v := int16(0); v <= 4; v++ {
		hb := kmsg.NewPtrHeartbeatRequest()
		hb.Version, hb.Group, hb.MemberID = v, "g", "m"
		if resp := rawRoundTrip(t, ts.addr, hb).(*kmsg.HeartbeatResponse); resp.ErrorCode != 27 {
			t.Errorf("heartbeat v%d: %+v", v, resp)
		}
	}
	// Groups learns who is asking from the context.
	jg := kmsg.NewPtrJoinGroupRequest()
	jg.Version, jg.Group, jg.ProtocolType = 9, "g", "consumer"
	if resp := rawRoundTrip(t, ts.addr, jg).(*kmsg.JoinGroupResponse); resp.MemberID != "raw-test /127.0.0.1" {
		t.Errorf("client info seen by Groups: %q", resp.MemberID)
	}
	if id, host := ClientInfo(context.Background()); id != "" || host != "" {
		t.Errorf("client info of a foreign context: %q %q", id, host)
	}
	// An idempotent kgo producer gets its id from Groups.
	idem, err := kgo.NewClient(kgo.SeedBrokers(ts.addr), kgo.DefaultProduceTopic("idem"), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer idem.Close()
	if err := idem.ProduceSync(ctxT(t, 10*time.Second), &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestIdempotentWithoutGroups: kgo enables idempotence by default; without
// InitProducerId advertised it must still be able to produce.
func TestIdempotentWithoutGroups(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	cl, err := kgo.NewClient(kgo.SeedBrokers(ts.addr), kgo.DefaultProduceTopic("idem"), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctxT(t, 5*time.Second), &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatalf("idempotent produce without InitProducerId: %v", err)
	}
}
