package protocol

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestMetadataVersions(t *testing.T) {
	ts := startServer(t, Config{NodeID: 2}, nil)
	ts.b.CreateTopic(context.Background(), "a", 3, nil, false)
	ts.b.CreateTopic(context.Background(), "__consumer_offsets", 1, nil, false)
	id, _, _ := ts.b.Topic(context.Background(), "a", false)
	names := func(r *kmsg.MetadataResponse) map[string]kmsg.MetadataResponseTopic {
		m := map[string]kmsg.MetadataResponseTopic{}
		for _, tp := range r.Topics {
			name := "<nil>"
			if tp.Topic != nil {
				name = *tp.Topic
			}
			m[name] = tp
		}
		return m
	}
	for v := int16(0); v <= 12; v++ {
		req := func(auto bool, topics ...string) *kmsg.MetadataRequest {
			r := kmsg.NewPtrMetadataRequest()
			r.Version, r.AllowAutoTopicCreation = v, auto
			r.Topics = []kmsg.MetadataRequestTopic{}
			for _, n := range topics {
				rt := kmsg.NewMetadataRequestTopic()
				rt.Topic = kmsg.StringPtr(n)
				r.Topics = append(r.Topics, rt)
			}
			return r
		}
		all := req(false)
		if v >= 1 {
			all.Topics = nil
		}
		got := names(rawRoundTrip(t, ts.addr, all).(*kmsg.MetadataResponse))
		a := got["a"]
		if len(got) != 2 || len(a.Partitions) != 3 || a.Partitions[2].Leader != 2 || got["__consumer_offsets"].IsInternal != (v >= 1) {
			t.Errorf("v%d all topics: %+v", v, got)
		}
		if (v >= 10) != (a.TopicID == id) {
			t.Errorf("v%d topic id %x", v, a.TopicID)
		}
		if v >= 1 {
			if got := rawRoundTrip(t, ts.addr, req(false)).(*kmsg.MetadataResponse); len(got.Topics) != 0 || len(got.Brokers) != 1 {
				t.Errorf("v%d no topics: %d topics %d brokers", v, len(got.Topics), len(got.Brokers))
			}
		}
		missing := names(rawRoundTrip(t, ts.addr, req(false, "m1")).(*kmsg.MetadataResponse))
		wantCode := kerr.UnknownTopicOrPartition.Code
		if v < 4 {
			wantCode = 0 // auto-creation is implied before v4
		}
		if missing["m1"].ErrorCode != wantCode {
			t.Errorf("v%d missing topic without auto-create: code %d", v, missing["m1"].ErrorCode)
		}
		ts.b.DeleteTopic(context.Background(), "m1")
		created := names(rawRoundTrip(t, ts.addr, req(true, "m2")).(*kmsg.MetadataResponse))
		if created["m2"].ErrorCode != 0 || len(created["m2"].Partitions) != 1 {
			t.Errorf("v%d auto-create: %+v", v, created["m2"])
		}
		ts.b.DeleteTopic(context.Background(), "m2")
		bad := names(rawRoundTrip(t, ts.addr, req(true, "bad name")).(*kmsg.MetadataResponse))
		if bad["bad name"].ErrorCode != kerr.InvalidTopicException.Code {
			t.Errorf("v%d invalid name: %+v", v, bad["bad name"])
		}
	}
	// v12 by id alone, known and unknown.
	r := kmsg.NewPtrMetadataRequest()
	r.Version = 12
	for _, tid := range [][16]byte{id, {9}} {
		rt := kmsg.NewMetadataRequestTopic()
		rt.TopicID = tid
		r.Topics = append(r.Topics, rt)
	}
	resp := rawRoundTrip(t, ts.addr, r).(*kmsg.MetadataResponse)
	if tp := resp.Topics[0]; tp.Topic == nil || *tp.Topic != "a" || len(tp.Partitions) != 3 {
		t.Errorf("by id: %+v", tp)
	}
	if tp := resp.Topics[1]; tp.ErrorCode != kerr.UnknownTopicID.Code {
		t.Errorf("unknown id: %+v", tp)
	}
}
