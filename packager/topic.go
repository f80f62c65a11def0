package packager

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// The topic configs in which a topic states its alerts' wire format. They
// are ztfbroker's own keys: the embedded broker records them, a Kafka
// cluster refuses them (INVALID_CONFIG), and then the topic goes without.
const (
	ConfigAlertFormat   = "ztf.alert.format"
	ConfigAlertSchemaID = "ztf.alert.schema.id"
)

// topicCreateTimeout bounds the CreateTopics round trip before a topic's
// first alert; past it the producer's auto-creation makes the topic.
const topicCreateTimeout = 10 * time.Second

// topicSetup creates each topic the packager writes, once per process and
// before its first alert, with its format in its config, so that consumers
// and tools can read the format rather than sniff the bytes. It does nothing
// when the producer is not a *kgo.Client. Nothing here fails packaging: at
// worst the topic is auto-created by the first produce, as before.
type topicSetup struct {
	adm        *kadm.Client // nil: no topics are created
	schemaID   int32
	partitions int32 // -1: the cluster's num.partitions
	log        *zap.Logger
	seen       sync.Map    // topic -> *sync.Once
	refused    atomic.Bool // the cluster refused the ztf.alert.* configs once
}

func newTopicSetup(prod Producer, schemaID, partitions int32, logger *zap.Logger) *topicSetup {
	ts := &topicSetup{schemaID: schemaID, partitions: partitions, log: logger}
	if cl, ok := prod.(*kgo.Client); ok {
		ts.adm = kadm.NewClient(cl)
	}
	return ts
}

// ensure returns once topic exists or creating it has been tried. Callers
// for the same topic wait for the first; later calls cost a map lookup.
func (ts *topicSetup) ensure(ctx context.Context, topic string, f Format) {
	if ts.adm == nil {
		return
	}
	v, ok := ts.seen.Load(topic)
	if !ok {
		v, _ = ts.seen.LoadOrStore(topic, new(sync.Once))
	}
	v.(*sync.Once).Do(func() { ts.create(ctx, topic, f) })
}

// configs are the topic configs stating format f.
func (ts *topicSetup) configs(f Format) map[string]*string {
	c := map[string]*string{ConfigAlertFormat: kadm.StringPtr(string(f))}
	if f == FormatConfluent {
		c[ConfigAlertSchemaID] = kadm.StringPtr(strconv.Itoa(int(ts.schemaID)))
	}
	return c
}

func (ts *topicSetup) create(ctx context.Context, topic string, f Format) {
	ctx, cancel := context.WithTimeout(ctx, topicCreateTimeout)
	defer cancel()
	log := ts.log.With(zap.String("topic", topic))
	if !ts.refused.Load() {
		// -1: the cluster's replication factor.
		_, err := ts.adm.CreateTopic(ctx, ts.partitions, -1, ts.configs(f), topic)
		switch {
		case err == nil:
			log.Info("topic created", zap.String(ConfigAlertFormat, string(f)), zap.Int32("partitions", ts.partitions))
			return
		case errors.Is(err, kerr.TopicAlreadyExists):
			return // whatever it states is left alone
		case !errors.Is(err, kerr.InvalidConfig):
			log.Warn("topic not created ahead of its first alert; the producer's auto-creation will make it, without its format", zap.Error(err))
			return
		}
		if ts.refused.CompareAndSwap(false, true) {
			log.Info("the cluster does not record the alert format: it refused the topic config "+ConfigAlertFormat+
				"; topics are created without it", zap.Error(err))
		}
	}
	if _, err := ts.adm.CreateTopic(ctx, ts.partitions, -1, nil, topic); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		log.Warn("topic not created ahead of its first alert; the producer's auto-creation will make it", zap.Error(err))
	}
}
