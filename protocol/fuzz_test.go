package protocol

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// FuzzRequest feeds arbitrary frames (what follows the size) through the
// decoding and dispatch path: no input may panic or hang, and whatever is
// answered must encode.
func FuzzRequest(f *testing.F) {
	b := newMemBackend()
	b.CreateTopic(context.Background(), "t", 2, nil, false)
	s, err := NewServer(Config{FetchMaxWait: time.Millisecond}, b, stubGroups{}, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	client, server := net.Pipe()
	f.Cleanup(func() { client.Close(); server.Close() })
	c := newConn(s, &listener{cfg: ListenerConfig{Name: "fuzz"}, host: "127.0.0.1", port: 9092}, server)
	f.Cleanup(c.cancel)

	batch := makeBatch(2, 5, 1)
	seeds := []kmsg.Request{
		kmsg.NewPtrApiVersionsRequest(),
		kmsg.NewPtrMetadataRequest(),
		produceReq(9, 1, "t", 0, batch),
		produceReq(3, -1, "t", 1, batch),
		produceReq(10, 0, "t", 0, batch),
		fetchReq(4, 1<<20, 1<<20, fetchTarget{topic: "t"}),
		fetchReq(15, 1<<20, 1<<20, fetchTarget{topic: "t"}),
		kmsg.NewPtrListOffsetsRequest(),
		kmsg.NewPtrOffsetForLeaderEpochRequest(),
		kmsg.NewPtrCreateTopicsRequest(),
		kmsg.NewPtrDeleteTopicsRequest(),
		kmsg.NewPtrCreatePartitionsRequest(),
		kmsg.NewPtrDeleteRecordsRequest(),
		kmsg.NewPtrDescribeConfigsRequest(),
		kmsg.NewPtrDescribeClusterRequest(),
		kmsg.NewPtrFindCoordinatorRequest(),
		kmsg.NewPtrJoinGroupRequest(),
		kmsg.NewPtrOffsetCommitRequest(),
	}
	for _, req := range seeds {
		a := apis[req.Key()]
		for _, v := range []int16{a.min, a.max} {
			if req.Key() == 0 || req.Key() == 1 {
				v = req.GetVersion()
			}
			req.SetVersion(v)
			f.Add(frame(req, 1)[4:])
		}
	}
	f.Add([]byte{0, 18, 0, 127, 0, 0, 0, 1, 0xff, 0xff})
	f.Add([]byte{0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0, 0})

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < minHeaderBytes {
			return
		}
		r, _, _ := c.handle(append([]byte(nil), data...))
		if r.resp == nil {
			return
		}
		if fr, ok := r.resp.(*fetchResponse); ok {
			fr.appendChunks(nil)
		} else {
			r.resp.AppendTo(nil)
		}
		releaseResponse(r.resp)
	})
}
