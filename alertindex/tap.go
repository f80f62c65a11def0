package alertindex

import (
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
)

// Tap is the alerts handed over by the broker of the same process as it
// appends them (broker.Tap, which it implements without importing broker):
// each record's offset and the first bytes of its value, copied while the
// broker validated the produced batch. With a Tap (Follower.UseTap) the
// follower reads a partition from it rather than fetching, and so does not
// decompress again what the broker has just decompressed.
//
// The Tap is a hint beside the consumer group, not a replacement: the
// follower takes a partition's records from it only while they continue
// exactly at the offset the index stands at, and commits its group's offsets
// as it does for fetched records. Anything else (a restart, a follower
// behind, a Tap full, a prefix too short to decode, a record the broker
// could not hand over) and the follower fetches the partition from where it
// stands. Its buffer holds at most Config.TapBytes of prefixes: a record
// that does not fit is dropped and its partition marked, never waited for.
type Tap struct {
	topics *regexp.Regexp
	limit  int64
	// want is the prefix asked for: at first maxTapPrefix, then what
	// the summaries decoded needed and a margin (noteNeeded).
	want   atomic.Int64
	needed atomic.Int64 // the most a summary needed since askAll

	mu      sync.Mutex
	held    int64 // bytes of values held
	parts   map[topicPartition]*tapQueue
	matches map[string]bool // topics seen, whether they are followed
	dropped int64           // records dropped because the buffer was full
	wake    chan struct{}   // holds a token when records arrived
	// free holds prefixes decoded, for Buffer to hand out again.
	free sync.Pool
}

type topicPartition struct {
	topic     string
	partition int32
}

// tapQueue is one partition's records, in offset order.
type tapQueue struct {
	recs []tapRecord
	// missed: records of the partition may have been appended without
	// being here (dropped, or the broker said so).
	missed bool
}

type tapRecord struct {
	offset   int64
	value    []byte
	valueLen int
}

const (
	// maxTapPrefix is the most of a value a Tap asks for: a ZTF alert's
	// header (its schema, ~26 kB) and candidate fit many times over.
	maxTapPrefix = 64 << 10
	// tapPrefixMargin is added to the bytes the summaries needed.
	tapPrefixMargin = 4 << 10
	// maxTapTopics bounds the topics whose match is remembered.
	maxTapTopics = 4096
)

// NewTap returns a Tap for the topics of cfg, holding at most cfg.TapBytes.
func NewTap(cfg Config) (*Tap, error) {
	re, err := regexp.Compile(cfg.Topics)
	if err != nil {
		return nil, err
	}
	t := &Tap{topics: re, limit: cfg.TapBytes, parts: map[topicPartition]*tapQueue{},
		matches: map[string]bool{}, wake: make(chan struct{}, 1)}
	t.want.Store(maxTapPrefix)
	return t, nil
}

// Wants is the prefix of each value of topic the Tap keeps (0: none).
func (t *Tap) Wants(topic string) int {
	t.mu.Lock()
	ok, known := t.matches[topic]
	if !known {
		ok = t.topics.MatchString(topic)
		if len(t.matches) >= maxTapTopics {
			clear(t.matches)
		}
		t.matches[topic] = ok
	}
	t.mu.Unlock()
	if !ok {
		return 0
	}
	return int(t.want.Load())
}

// Appended keeps one record, or drops it when the buffer is full.
func (t *Tap) Appended(topic string, partition int32, offset int64, _, value []byte, valueLen int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.queue(topicPartition{topic, partition})
	if t.held+int64(len(value)) > t.limit {
		q.missed = true
		t.dropped++
		t.signal()
		return
	}
	r := tapRecord{offset: offset, value: value, valueLen: valueLen}
	// Requests to one partition are acknowledged in offset order but for
	// a race between connections: insert in place.
	if n := len(q.recs); n == 0 || q.recs[n-1].offset < offset {
		q.recs = append(q.recs, r)
	} else {
		i, found := slices.BinarySearchFunc(q.recs, offset, func(r tapRecord, o int64) int { return cmpInt64(r.offset, o) })
		if found {
			return
		}
		q.recs = slices.Insert(q.recs, i, r)
	}
	t.held += int64(len(value))
	t.signal()
}

// queue is tp's queue, made at its first use; t.mu is held.
func (t *Tap) queue(tp topicPartition) *tapQueue {
	q := t.parts[tp]
	if q == nil {
		q = &tapQueue{}
		t.parts[tp] = q
	}
	return q
}

// Missed marks the partition: records may be in the log and not here.
func (t *Tap) Missed(topic string, partition int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.queue(topicPartition{topic, partition})
	q.missed = true
	t.signal()
}

// Buffer hands out a recycled buffer of n bytes when one is free.
func (t *Tap) Buffer(n int) []byte {
	if b, ok := t.free.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]byte, n, max(n, int(t.want.Load())))
}

// recycle gives a decoded prefix back for Buffer.
func (t *Tap) recycle(b []byte) {
	if cap(b) >= int(t.want.Load()) {
		b = b[:0]
		t.free.Put(&b)
	}
}

func (t *Tap) signal() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Dropped is the records dropped because the buffer was full.
func (t *Tap) Dropped() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dropped
}

// tapState is what the Tap holds of one partition for the follower.
type tapState struct {
	head   int64 // offset of the first record held; -1: none
	missed bool
}

// partitions lists the partitions the Tap holds records or marks of.
func (t *Tap) partitions() map[topicPartition]tapState {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[topicPartition]tapState, len(t.parts))
	for tp, q := range t.parts {
		s := tapState{head: -1, missed: q.missed}
		if len(q.recs) > 0 {
			s.head = q.recs[0].offset
		}
		out[tp] = s
	}
	return out
}

// take removes and returns the partition's records that run without a
// gap from offset pos, at most max, after dropping those below pos.
func (t *Tap) take(tp topicPartition, pos int64, max int) []tapRecord {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.parts[tp]
	if q == nil {
		return nil
	}
	i := 0
	for i < len(q.recs) && q.recs[i].offset < pos {
		t.held -= int64(len(q.recs[i].value))
		i++
	}
	j := i
	for j < len(q.recs) && j-i < max && q.recs[j].offset == pos+int64(j-i) {
		t.held -= int64(len(q.recs[j].value))
		j++
	}
	out := slices.Clone(q.recs[i:j])
	clear(q.recs[:j])
	q.recs = q.recs[j:]
	if len(q.recs) == 0 && !q.missed {
		delete(t.parts, tp)
	}
	return out
}

// clearMissed unmarks a partition the follower fetches again from pos.
func (t *Tap) clearMissed(tp topicPartition) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if q := t.parts[tp]; q != nil {
		q.missed = false
		if len(q.recs) == 0 {
			delete(t.parts, tp)
		}
	}
}

// forget drops what the Tap holds of a partition (no longer assigned).
func (t *Tap) forget(tp topicPartition) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if q := t.parts[tp]; q != nil {
		for _, r := range q.recs {
			t.held -= int64(len(r.value))
		}
		delete(t.parts, tp)
	}
}

// full says whether the buffer holds more than half its bound.
func (t *Tap) halfFull() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.held > t.limit/2
}

// noteNeeded lowers (or raises) the prefix asked for to what a summary
// needed plus a margin.
func (t *Tap) noteNeeded(n int) {
	if int64(n) <= t.needed.Load() {
		return
	}
	t.needed.Store(int64(n))
	t.want.Store(min(int64(n)+tapPrefixMargin, maxTapPrefix))
}

// askAll asks for whole prefixes again, after one was too short.
func (t *Tap) askAll() {
	t.needed.Store(0)
	t.want.Store(maxTapPrefix)
}
