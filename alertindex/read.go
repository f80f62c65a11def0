package alertindex

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ErrGone is returned for an alert whose offset the log no longer holds
// (retention deleted it before the index noticed).
var ErrGone = errors.New("alertindex: alert no longer in the log")

// maxAlertFetch bounds what one read of an alert fetches: the batch that
// holds it is returned whole, and the packager's batches stay within 1 MiB.
const maxAlertFetch = 16 << 20

// ReadAlert fetches the message at topic/partition/offset from the log
// with one Fetch request to the partition's leader (any broker when
// leader < 0): the alert's exact bytes, as produced.
func ReadAlert(ctx context.Context, cl *kgo.Client, leader int32, topic string, partition int32, offset int64) ([]byte, error) {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = 0
	req.MinBytes = 1
	req.MaxBytes = maxAlertFetch
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition = partition
	rp.FetchOffset = offset
	rp.PartitionMaxBytes = maxAlertFetch
	rp.CurrentLeaderEpoch = -1
	rp.LogStartOffset = -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)

	var resp kmsg.Response
	var err error
	if leader >= 0 {
		resp, err = cl.Broker(int(leader)).Request(ctx, req)
	} else {
		resp, err = cl.Request(ctx, req)
	}
	if err != nil {
		return nil, fmt.Errorf("alertindex: fetch %s/%d@%d: %w", topic, partition, offset, err)
	}
	fr := resp.(*kmsg.FetchResponse)
	if err := kerr.ErrorForCode(fr.ErrorCode); err != nil {
		return nil, fmt.Errorf("alertindex: fetch %s/%d@%d: %w", topic, partition, offset, err)
	}
	for _, t := range fr.Topics {
		for i := range t.Partitions {
			p := &t.Partitions[i]
			if p.Partition != partition {
				continue
			}
			if errors.Is(kerr.ErrorForCode(p.ErrorCode), kerr.OffsetOutOfRange) {
				return nil, ErrGone
			}
			fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Offset: offset, Topic: topic, Partition: partition}, p, kgo.DefaultDecompressor(), nil)
			if fp.Err != nil {
				return nil, fmt.Errorf("alertindex: fetch %s/%d@%d: %w", topic, partition, offset, fp.Err)
			}
			for _, r := range fp.Records {
				if r.Offset == offset {
					return r.Value, nil
				}
			}
			return nil, ErrGone
		}
	}
	return nil, fmt.Errorf("alertindex: fetch %s/%d@%d: no answer for the partition", topic, partition, offset)
}
