package broker

// The group coordinator (classic protocol), committed offsets and producer ids
// (issue 4). One GroupCoordinator serves every group of this node: the
// listener answers FindCoordinator with this node for any key.
//
// Metadata keys in pebble (DataDir/meta) and their durability are the
// package doc's (doc.go), the on-disk format.
//
// Concurrency: GroupCoordinator.mu guards the map of groups only; each group
// has its own mutex, held across its state changes and the synced writes
// they make. A JoinGroup or SyncGroup that must wait for the rest of the
// group parks on a channel with the group's lock released; whoever completes
// the barrier (another member's request or the timer sweep) sends every
// parked member its answer. Timeouts (session, rebalance, pending member,
// offset retention) are deadlines checked by one sweep goroutine against the
// injected clock, so that tests drive them with a fake clock and Tick.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

const (
	groupKeyPrefix     = "group/"
	offsetKeyPrefix    = "offset/"
	producerNextKey    = "producer/next"
	producerSeqPrefix  = "producer/seq/"
	offsetMetadataMax  = 4096 // offset.metadata.max.bytes
	defaultGroupMaxLen = 1000 // group.max.size

	// Member metadata (JoinGroup's protocol metadata: a consumer's topics
	// and owned partitions, a few hundred bytes to a few KiB) is kept in
	// memory and rewritten to pebble at every rebalance. Kafka bounds it
	// only by socket.request.max.bytes (100 MiB), so 20 members of 10 MiB
	// held a gigabyte. ztfbroker caps it explicitly: a member's protocols'
	// metadata together at memberMetadataMax, refused with INVALID_REQUEST
	// (the request is malformed for this broker, and retrying will not
	// help); the metadata of all of a group's members at groupMetadataMax,
	// refused with GROUP_MAX_SIZE_REACHED (the group is full, in bytes
	// rather than members). Not settings: no real client comes near them.
	memberMetadataMax = 1 << 20
	groupMetadataMax  = 8 << 20
)

// GroupConfig configures the group coordinator and producer ids. Each field
// names its Kafka setting, which ApplySettings accepts.
type GroupConfig struct {
	// OffsetsRetention is how long an empty group keeps its committed
	// offsets (and a group without members a commit). offsets.retention.minutes.
	OffsetsRetention time.Duration
	// RetentionCheckInterval is how often expired offsets are looked for.
	// offsets.retention.check.interval.ms.
	RetentionCheckInterval time.Duration
	// MinSessionTimeout and MaxSessionTimeout bound a member's session
	// timeout. group.min.session.timeout.ms, group.max.session.timeout.ms.
	MinSessionTimeout time.Duration
	MaxSessionTimeout time.Duration
	// MaxSize bounds the members of one group. group.max.size.
	MaxSize int
	// InitialRebalanceDelay holds the first rebalance of an empty group
	// so that members starting together form one generation.
	// group.initial.rebalance.delay.ms; 0 (Kafka: 3 s) because a nightly
	// consumer fleet rarely starts at once and waiting costs every start.
	InitialRebalanceDelay time.Duration
	// ProducerIDExpiration forgets a producer's sequences on a partition
	// after this long without a write. producer.id.expiration.ms.
	ProducerIDExpiration time.Duration
	// SweepInterval is how often session and rebalance deadlines are
	// checked; a deadline fires at most this late. Not a Kafka setting.
	SweepInterval time.Duration
}

// DefaultGroupConfig returns Kafka's defaults (except the initial rebalance
// delay, see GroupConfig).
func DefaultGroupConfig() GroupConfig {
	return GroupConfig{
		OffsetsRetention:       7 * 24 * time.Hour,
		RetentionCheckInterval: 10 * time.Minute,
		MinSessionTimeout:      6 * time.Second,
		MaxSessionTimeout:      30 * time.Minute,
		MaxSize:                defaultGroupMaxLen,
		ProducerIDExpiration:   24 * time.Hour,
		SweepInterval:          100 * time.Millisecond,
	}
}

// Validate returns every problem of c, each naming its setting.
func (c GroupConfig) Validate() error {
	var errs []error
	pos := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s %v: must be positive", name, d))
		}
	}
	pos("offsets.retention.minutes", c.OffsetsRetention)
	pos("offsets.retention.check.interval.ms", c.RetentionCheckInterval)
	pos("group.min.session.timeout.ms", c.MinSessionTimeout)
	pos("producer.id.expiration.ms", c.ProducerIDExpiration)
	pos("sweep interval", c.SweepInterval)
	if c.MaxSessionTimeout < c.MinSessionTimeout {
		errs = append(errs, fmt.Errorf("group.max.session.timeout.ms %v: below group.min.session.timeout.ms %v", c.MaxSessionTimeout, c.MinSessionTimeout))
	}
	if c.MaxSize < 1 {
		errs = append(errs, fmt.Errorf("group.max.size %d: must be at least 1", c.MaxSize))
	}
	if c.InitialRebalanceDelay < 0 {
		errs = append(errs, fmt.Errorf("group.initial.rebalance.delay.ms %v: must not be negative", c.InitialRebalanceDelay))
	}
	return errors.Join(errs...)
}

// GroupSettings are the Kafka setting names ApplySettings understands, so
// that a caller can route a YAML file's keys between configs.
var GroupSettings = []string{
	"offsets.retention.minutes", "offsets.retention.check.interval.ms",
	"group.min.session.timeout.ms", "group.max.session.timeout.ms", "group.max.size",
	"group.initial.rebalance.delay.ms", "producer.id.expiration.ms",
}

// ApplySettings sets the Kafka-named settings onto c. Every unknown key or
// bad value is named in the joined error; c is changed only when there is none.
func (c *GroupConfig) ApplySettings(settings map[string]string) error {
	next := *c
	var errs []error
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		n, err := strconv.ParseInt(settings[k], 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", k, settings[k], err))
			continue
		}
		// A count past what a time.Duration holds would wrap around.
		unit := time.Millisecond
		if k == "offsets.retention.minutes" {
			unit = time.Minute
		}
		if most := int64(math.MaxInt64 / unit); k != "group.max.size" && (n > most || n < -most) {
			errs = append(errs, fmt.Errorf("%s %q: out of range: at most %d", k, settings[k], most))
			continue
		}
		switch k {
		case "offsets.retention.minutes":
			next.OffsetsRetention = time.Duration(n) * time.Minute
		case "offsets.retention.check.interval.ms":
			next.RetentionCheckInterval = time.Duration(n) * time.Millisecond
		case "group.min.session.timeout.ms":
			next.MinSessionTimeout = time.Duration(n) * time.Millisecond
		case "group.max.session.timeout.ms":
			next.MaxSessionTimeout = time.Duration(n) * time.Millisecond
		case "group.max.size":
			next.MaxSize = int(n)
		case "group.initial.rebalance.delay.ms":
			next.InitialRebalanceDelay = time.Duration(n) * time.Millisecond
		case "producer.id.expiration.ms":
			next.ProducerIDExpiration = time.Duration(n) * time.Millisecond
		default:
			errs = append(errs, fmt.Errorf("%s: unknown group setting", k))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := next.Validate(); err != nil {
		return err
	}
	*c = next
	return nil
}

// HighWatermarkFunc returns a partition's high watermark; an error wrapping
// kerr.UnknownTopicOrPartition means the partition does not exist.
type HighWatermarkFunc func(topic string, partition int32) (int64, error)

// GroupCoordinator serves the group and producer-id requests of
// protocol.Groups (it is asserted in group_external_test.go).
type GroupCoordinator struct {
	cfg    GroupConfig
	db     *pebble.DB
	logger *zap.Logger
	now    func() time.Time
	hwm    HighWatermarkFunc
	// disk refuses metadata writes while the data directory is nearly
	// full; nil (a coordinator without a Broker, in tests) allows them.
	disk *diskSpace

	// clientInfo reads the client id and address of a request's connection
	// from its context; see SetClientInfo.
	clientInfo func(context.Context) (clientID, host string)

	mu     sync.Mutex
	groups map[string]*group

	producers *ProducerSequences
	metrics   *groupMetrics

	lastExpiry time.Time

	quit      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// NewGroupCoordinator loads the groups, committed offsets and producer state
// kept in db and starts the deadline sweep. logger nil means no logging, reg
// nil means no metrics, now nil means time.Now; hwm reads high watermarks for
// commit validation and the consumer-lag metric (nil: no validation, no lag).
func NewGroupCoordinator(db *pebble.DB, cfg GroupConfig, logger *zap.Logger, reg prometheus.Registerer, now func() time.Time, hwm HighWatermarkFunc) (*GroupCoordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("group coordinator: %w", err)
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	if now == nil {
		now = time.Now
	}
	c := &GroupCoordinator{
		cfg:        cfg,
		db:         db,
		logger:     logger.Named("groups"),
		now:        now,
		hwm:        hwm,
		clientInfo: func(context.Context) (string, string) { return "", "" },
		groups:     map[string]*group{},
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	c.lastExpiry = now()
	var err error
	if c.producers, err = newProducerSequences(db, cfg.ProducerIDExpiration, c.logger, now); err != nil {
		return nil, fmt.Errorf("group coordinator: %w", err)
	}
	c.producers.onDropTopic = c.dropTopicOffsets
	if err := c.load(); err != nil {
		return nil, fmt.Errorf("group coordinator: %w", err)
	}
	if c.metrics, err = newGroupMetrics(c, reg); err != nil {
		return nil, fmt.Errorf("group coordinator: register metrics: %w", err)
	}
	go c.sweepLoop()
	return c, nil
}

// OpenGroupCoordinator builds the coordinator over an open broker: its
// metadata store, logger, clock and high watermarks, and installs the
// producer sequence check in its Produce path. Close the coordinator before
// the broker.
func OpenGroupCoordinator(b *Broker, cfg GroupConfig, reg prometheus.Registerer) (*GroupCoordinator, error) {
	hwm := func(topic string, partition int32) (int64, error) {
		_, h, err := b.Offsets(context.Background(), topic, partition)
		return h, err
	}
	c, err := NewGroupCoordinator(b.Meta(), cfg, b.Logger(), reg, b.now, hwm)
	if err != nil {
		return nil, err
	}
	c.disk, c.producers.disk = b.disk, b.disk
	b.SetProducerCheck(c.Producers())
	return c, nil
}

// SetClientInfo installs how the client id and address of a request are
// read from its context (the listener knows them; protocol.Groups does not
// carry them). Call before serving; without it DescribeGroups reports them
// empty and member ids start with "member".
func (c *GroupCoordinator) SetClientInfo(f func(ctx context.Context) (clientID, host string)) {
	if f != nil {
		c.clientInfo = f
	}
}

// Producers is the idempotent-producer sequence state the broker's Produce
// consults (see ProducerSequences.Check).
func (c *GroupCoordinator) Producers() *ProducerSequences { return c.producers }

// Close stops the sweep. It is safe to call more than once; the pebble DB
// belongs to the caller and stays open.
func (c *GroupCoordinator) Close() error {
	c.closeOnce.Do(func() { close(c.quit) })
	<-c.done
	return nil
}

func (c *GroupCoordinator) sweepLoop() {
	defer close(c.done)
	t := time.NewTicker(c.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-c.quit:
			return
		case <-t.C:
			c.Tick()
		}
	}
}

// Tick fires every deadline that has passed on the coordinator's clock:
// session and rebalance timeouts, pending members, and (every
// RetentionCheckInterval) offset expiry. The sweep goroutine calls it; tests
// call it after moving a fake clock.
func (c *GroupCoordinator) Tick() {
	now := c.now()
	expire := now.Sub(c.lastExpiryTime()) >= c.cfg.RetentionCheckInterval
	for _, g := range c.allGroups() {
		g.mu.Lock()
		if !g.dead {
			g.tickLocked(now)
			if expire {
				g.expireOffsetsLocked(now)
			}
			if g.removableLocked(expire) {
				c.removeGroupLocked(g)
			}
		}
		g.mu.Unlock()
	}
	if expire {
		c.mu.Lock()
		c.lastExpiry = now
		c.mu.Unlock()
	}
}

func (c *GroupCoordinator) lastExpiryTime() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastExpiry
}

// allGroups snapshots the groups, sorted by name for a stable order.
func (c *GroupCoordinator) allGroups() []*group {
	c.mu.Lock()
	gs := make([]*group, 0, len(c.groups))
	for _, g := range c.groups {
		gs = append(gs, g)
	}
	c.mu.Unlock()
	sort.Slice(gs, func(i, j int) bool { return gs[i].name < gs[j].name })
	return gs
}

// lookup returns the live group named name, or nil.
func (c *GroupCoordinator) lookup(name string) *group {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.groups[name]
}

// lockGroup returns the group named name locked, creating it when create is
// set, or nil. A group found dead (deleted between lookup and lock) is looked
// up again.
func (c *GroupCoordinator) lockGroup(name string, create bool) *group {
	for {
		c.mu.Lock()
		g := c.groups[name]
		if g == nil {
			if !create {
				c.mu.Unlock()
				return nil
			}
			g = newGroup(c, name)
			c.groups[name] = g
		}
		c.mu.Unlock()
		g.mu.Lock()
		if !g.dead {
			return g
		}
		g.mu.Unlock()
	}
}

// removeGroupLocked drops g from the map and from pebble; g.mu is held.
func (c *GroupCoordinator) removeGroupLocked(g *group) {
	g.dead = true
	g.state = groupDead
	c.mu.Lock()
	if c.groups[g.name] == g {
		delete(c.groups, g.name)
	}
	c.mu.Unlock()
	if g.persisted || len(g.offsets) > 0 {
		b := c.db.NewBatch()
		_ = b.Delete(groupKey(g.name), nil)
		prefix := offsetGroupPrefix(g.name)
		_ = b.DeleteRange(prefix, keyPrefixEnd(prefix), nil)
		if err := b.Commit(pebble.Sync); err != nil {
			c.logger.Error("delete group", zap.String("group", g.name), zap.Error(err))
		}
	}
	g.offsets = nil
	g.persisted = false
}

// newMemberID is the client id (or instance id) and a random suffix, as
// Kafka forms them.
func newMemberID(clientID string, instanceID *string) string {
	prefix := clientID
	if instanceID != nil {
		prefix = *instanceID
	}
	if prefix == "" {
		prefix = "member"
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// appendKeyString appends s length-prefixed, so composite keys never clash.
func appendKeyString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// readKeyString is appendKeyString's inverse.
func readKeyString(src []byte) (string, []byte, bool) {
	n, k := binary.Uvarint(src)
	if k <= 0 || uint64(len(src)-k) < n {
		return "", nil, false
	}
	return string(src[k : k+int(n)]), src[k+int(n):], true
}

func groupKey(name string) []byte { return []byte(groupKeyPrefix + name) }

// keyPrefixEnd is the smallest key above every key starting with prefix.
func keyPrefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // no upper bound
}

// metadataBytes is the protocol metadata a member's JoinGroup carries.
func metadataBytes(protocols []kmsg.JoinGroupRequestProtocol) int {
	n := 0
	for _, p := range protocols {
		n += len(p.Metadata)
	}
	return n
}

// metadataBytesLocked is the protocol metadata g's members hold, but for
// the member with id except (the one about to join again).
func (g *group) metadataBytesLocked(except string) int {
	n := 0
	for id, m := range g.members {
		if id != except {
			n += metadataBytes(m.protocols)
		}
	}
	return n
}
