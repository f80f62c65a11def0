package protocol

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Backend is what the listener needs from the broker: topics and partitions.
// It is declared here, by its user; package broker implements it without
// importing protocol, so it speaks only basic types and kmsg/kerr types.
//
// Errors: a *kerr.Error (kerr.UnknownTopicOrPartition, kerr.OffsetOutOfRange,
// kerr.CorruptMessage, ...) becomes that code in the response; any other
// error becomes KAFKA_STORAGE_ERROR for partition calls and
// UNKNOWN_SERVER_ERROR otherwise, and is logged.
type Backend interface {
	ClusterID() string

	// TopicNames lists every topic, sorted.
	TopicNames(ctx context.Context) []string
	// Topic returns a topic's id and partition count, creating it with the
	// default partition count when it is missing and autoCreate is true (and
	// the broker allows auto-creation). Unknown: kerr.UnknownTopicOrPartition;
	// bad name: kerr.InvalidTopicException.
	Topic(ctx context.Context, name string, autoCreate bool) (id [16]byte, partitions int32, err error)
	// CreateTopic: partitions or configs < 0 / nil mean the broker default.
	CreateTopic(ctx context.Context, name string, partitions int32, configs map[string]*string, validateOnly bool) error
	DeleteTopic(ctx context.Context, name string) error
	CreatePartitions(ctx context.Context, name string, count int32, validateOnly bool) error
	// TopicConfigs / BrokerConfigs list every config (all when keys is nil)
	// with its value, default, source and sensitivity.
	TopicConfigs(ctx context.Context, name string, keys []string) ([]kmsg.DescribeConfigsResponseResourceConfig, error)
	BrokerConfigs(ctx context.Context, keys []string) []kmsg.DescribeConfigsResponseResourceConfig
	// AlterTopicConfigs applies IncrementalAlterConfigs changes to a
	// topic's configs; with replace (AlterConfigs) the changes, all SETs,
	// become its whole set of overrides. Checked, stored durably and in
	// force before it returns; nothing changes when it fails (bad config:
	// kerr.InvalidConfig).
	AlterTopicConfigs(ctx context.Context, name string, changes []kmsg.IncrementalAlterConfigsRequestResourceConfig, replace, validateOnly bool) error
	// LogDir describes the data directory and the sizes of the
	// partitions asked for (all when topics is nil): DescribeLogDirs.
	LogDir(ctx context.Context, topics []kmsg.DescribeLogDirsRequestTopic) kmsg.DescribeLogDirsResponseDir
	// Producers lists the idempotent producers a partition remembers:
	// DescribeProducers.
	Producers(ctx context.Context, topic string, partition int32) ([]kmsg.DescribeProducersResponseTopicPartitionActiveProducer, error)

	// Produce appends the record batches of one partition (one or more v2
	// batches, as sent) and returns once they are acknowledged per the
	// partition's flush policy. The base offset is that of the first batch.
	// batches is the listener's request memory, reused once Produce returns:
	// the Backend must not keep it.
	Produce(ctx context.Context, topic string, partition int32, batches []byte) (baseOffset, logStartOffset int64, err error)
	// Fetch appends to dst whole batches starting with the one containing
	// offset, up to maxBytes (at least one batch when any is available).
	Fetch(ctx context.Context, topic string, partition int32, offset int64, maxBytes int, dst []byte) (records []byte, highWatermark, logStartOffset int64, err error)
	// Changed is closed when the partition's high watermark next moves.
	Changed(ctx context.Context, topic string, partition int32) (<-chan struct{}, error)
	// Offsets returns the log start offset and high watermark.
	Offsets(ctx context.Context, topic string, partition int32) (logStartOffset, highWatermark int64, err error)
	// ListOffset resolves a ListOffsets timestamp (-1 latest, -2 earliest,
	// -3 max timestamp, else the first record with timestamp >= ts).
	ListOffset(ctx context.Context, topic string, partition int32, ts int64) (offset, timestamp int64, err error)
	DeleteRecords(ctx context.Context, topic string, partition int32, before int64) (lowWatermark int64, err error)
}

// DeferredProducer is optionally implemented by a Backend whose Produce
// splits in two: ProduceDeferred checks and appends the batches in request
// order and returns at once; wait blocks until they are acknowledged per the
// partition's flush policy (an fsync under flush.ms 0). The listener then
// reads a connection's next request while the previous one's fsync is under
// way, so pipelined produce requests share fsyncs (group commit) instead of
// each waiting for its own. batches may be reused once ProduceDeferred
// returns, as with Produce.
type DeferredProducer interface {
	ProduceDeferred(ctx context.Context, topic string, partition int32, batches []byte) (baseOffset, logStartOffset int64, wait func() error, err error)
}

// Groups is the group coordinator and producer-id allocator (issue 4). Each
// method answers one request; the request's version is req.GetVersion().
// A nil Groups means the listener does not serve these keys.
type Groups interface {
	JoinGroup(ctx context.Context, req *kmsg.JoinGroupRequest) *kmsg.JoinGroupResponse
	SyncGroup(ctx context.Context, req *kmsg.SyncGroupRequest) *kmsg.SyncGroupResponse
	Heartbeat(ctx context.Context, req *kmsg.HeartbeatRequest) *kmsg.HeartbeatResponse
	LeaveGroup(ctx context.Context, req *kmsg.LeaveGroupRequest) *kmsg.LeaveGroupResponse
	OffsetCommit(ctx context.Context, req *kmsg.OffsetCommitRequest) *kmsg.OffsetCommitResponse
	OffsetFetch(ctx context.Context, req *kmsg.OffsetFetchRequest) *kmsg.OffsetFetchResponse
	ListGroups(ctx context.Context, req *kmsg.ListGroupsRequest) *kmsg.ListGroupsResponse
	DescribeGroups(ctx context.Context, req *kmsg.DescribeGroupsRequest) *kmsg.DescribeGroupsResponse
	DeleteGroups(ctx context.Context, req *kmsg.DeleteGroupsRequest) *kmsg.DeleteGroupsResponse
	OffsetDelete(ctx context.Context, req *kmsg.OffsetDeleteRequest) *kmsg.OffsetDeleteResponse
	InitProducerID(ctx context.Context, req *kmsg.InitProducerIDRequest) *kmsg.InitProducerIDResponse
}
