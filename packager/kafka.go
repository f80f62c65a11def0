package packager

import (
	"github.com/twmb/franz-go/pkg/kgo"
)

// KafkaOptions configures the default producer.
type KafkaOptions struct {
	// Bootstrap brokers, host:port.
	Bootstrap []string
	// NoIdempotence turns off the idempotent producer, for brokers that do
	// not serve InitProducerId. acks=all either way.
	NoIdempotence bool
	// ClientID names the client to the brokers ("ztfbroker-packager").
	ClientID string
}

// NewKafkaProducer returns a franz-go client for the packager: acks=all,
// idempotent unless told otherwise, topics auto-created, no compression (the
// cutouts are gzipped already; the schema text compresses, but the CPU is
// better spent packaging).
func NewKafkaProducer(o KafkaOptions, extra ...kgo.Opt) (*kgo.Client, error) {
	id := o.ClientID
	if id == "" {
		id = "ztfbroker-packager"
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(o.Bootstrap...),
		kgo.ClientID(id),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.AllowAutoTopicCreation(),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.MaxBufferedBytes(1 << 30),
		kgo.MaxBufferedRecords(100_000),
		kgo.ProducerLinger(0),
	}
	if o.NoIdempotence {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	return kgo.NewClient(append(opts, extra...)...)
}
