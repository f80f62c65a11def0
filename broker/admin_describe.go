package broker

import (
	"context"
	"path/filepath"
	"slices"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// LogDir describes the one data directory (DescribeLogDirs): its absolute
// path, the size of every online partition's log (of the topics asked for;
// all when topics is nil), and the size and free space of its file system.
// OffsetLag is 0: with one replica the log end is the high watermark.
func (b *Broker) LogDir(ctx context.Context, topics []kmsg.DescribeLogDirsRequestTopic) kmsg.DescribeLogDirsResponseDir {
	d := kmsg.NewDescribeLogDirsResponseDir()
	d.Dir, _ = filepath.Abs(b.cfg.DataDir)
	if free, total, err := statfs(b.cfg.DataDir); err == nil {
		d.TotalBytes, d.UsableBytes = total, free
	}
	want := func(string, int32) bool { return true }
	if topics != nil {
		want = func(topic string, p int32) bool {
			i := slices.IndexFunc(topics, func(t kmsg.DescribeLogDirsRequestTopic) bool { return t.Topic == topic })
			return i >= 0 && slices.Contains(topics[i].Partitions, p)
		}
	}
	var dt *kmsg.DescribeLogDirsResponseDirTopic
	for _, p := range b.allPartitions() {
		if !want(p.topic, p.index) {
			continue
		}
		if dt == nil || dt.Topic != p.topic {
			d.Topics = append(d.Topics, kmsg.NewDescribeLogDirsResponseDirTopic())
			dt = &d.Topics[len(d.Topics)-1]
			dt.Topic = p.topic
		}
		dp := kmsg.NewDescribeLogDirsResponseDirTopicPartition()
		dp.Partition, dp.Size = p.index, p.log.Size()
		dt.Partitions = append(dt.Partitions, dp)
	}
	return d
}

// Producers lists the idempotent producers a partition remembers
// (DescribeProducers): id, epoch, the sequence of its last record and the
// broker's clock at its last append. No transactions: CoordinatorEpoch and
// CurrentTxnStartOffset are -1.
func (b *Broker) Producers(ctx context.Context, topic string, partition int32) ([]kmsg.DescribeProducersResponseTopicPartitionActiveProducer, error) {
	p, err := b.partition(topic, partition)
	if err != nil {
		return nil, err
	}
	states := p.log.ProducerStates()
	out := make([]kmsg.DescribeProducersResponseTopicPartitionActiveProducer, 0, len(states))
	for id, s := range states {
		ap := kmsg.NewDescribeProducersResponseTopicPartitionActiveProducer()
		ap.ProducerID, ap.ProducerEpoch = id, int32(s.Epoch)
		if n := len(s.Batches); n > 0 {
			ap.LastSequence = s.Batches[n-1].LastSeq
		}
		ap.LastTimestamp = s.LastWrite.UnixMilli()
		ap.CoordinatorEpoch, ap.CurrentTxnStartOffset = -1, -1
		out = append(out, ap)
	}
	slices.SortFunc(out, func(a, b kmsg.DescribeProducersResponseTopicPartitionActiveProducer) int {
		return int(min(max(a.ProducerID-b.ProducerID, -1), 1))
	})
	return out, nil
}
