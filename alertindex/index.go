package alertindex

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
	"github.com/golang/geo/s1"
	"github.com/golang/geo/s2"
	"go.uber.org/zap"
)

// ErrNotFound is returned for a candid the index does not hold.
var ErrNotFound = errors.New("alertindex: not found")

// Index is the pebble store of alert summaries and their keys. It is safe
// for concurrent use: writes (Add, Prune) are serialised, reads run beside
// them on pebble's snapshots.
type Index struct {
	db  *pebble.DB
	log *zap.Logger

	mu     sync.Mutex // serialises writes, guards topics
	topics map[string]int64
	// newest is at least the largest candid indexed before the recent
	// ones (math.MinInt64: none), recent holds the candids of the last
	// Adds (two generations of up to recentCandids): ZTF's candids grow
	// with time, so one above newest and not recent is new, and Add need
	// not look it up in the store.
	newest         int64
	recent, former map[int64]struct{}
}

// recentCandids bounds a generation of Index.recent: a 10,000-alert
// exposure fits in one.
const recentCandids = 32768

// Open opens (or creates) the index in dir. cacheBytes is pebble's block
// cache (0: 8 MiB).
func Open(dir string, cacheBytes int64, logger *zap.Logger) (*Index, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	if cacheBytes <= 0 {
		cacheBytes = 8 << 20
	}
	cache := pebble.NewCache(cacheBytes)
	defer cache.Unref()
	opts := &pebble.Options{Cache: cache, Logger: quietPebble{logger}, Levels: make([]pebble.LevelOptions, 7), MemTableSize: 16 << 20}
	for i := range opts.Levels {
		// Add looks up each candid first, and most are new: bloom
		// filters answer those without reading a block.
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		opts.Levels[i].EnsureDefaults()
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("alertindex: open %s: %w", dir, err)
	}
	x := &Index{db: db, log: logger, topics: map[string]int64{}, newest: math.MinInt64,
		recent: map[int64]struct{}{}}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixMeta, 't'}, UpperBound: []byte{prefixMeta, 't' + 1}})
	if err != nil {
		db.Close()
		return nil, err
	}
	for it.First(); it.Valid(); it.Next() {
		if len(it.Value()) == 8 {
			x.topics[string(it.Key()[2:])] = int64(binary.LittleEndian.Uint64(it.Value()))
		}
	}
	if err := it.Close(); err != nil {
		db.Close()
		return nil, err
	}
	it, err = db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixCandid}, UpperBound: []byte{prefixCandid + 1}})
	if err != nil {
		db.Close()
		return nil, err
	}
	if it.Last() && len(it.Key()) == 9 {
		x.newest = readCandid(it.Key()[1:])
	}
	if err := it.Close(); err != nil {
		db.Close()
		return nil, err
	}
	return x, nil
}

// quietPebble sends pebble's own log lines to zap at debug level.
type quietPebble struct{ l *zap.Logger }

func (q quietPebble) Infof(format string, args ...any) { q.l.Debug(fmt.Sprintf(format, args...)) }
func (q quietPebble) Errorf(format string, args ...any) {
	q.l.Error(fmt.Sprintf(format, args...))
}
func (q quietPebble) Fatalf(format string, args ...any) {
	q.l.Fatal(fmt.Sprintf(format, args...))
}

// Close closes the store.
func (x *Index) Close() error { return x.db.Close() }

// Add indexes summaries in one synced batch. An alert already indexed at
// the same place is left as it is; a candid seen again elsewhere (a second
// replay to another topic) moves to its new place.
func (x *Index) Add(sums []Summary) (added int, err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	// A plain batch: the rows it holds are looked up in written, not in
	// the batch (an indexed batch keeps a skiplist of its keys).
	b := x.db.NewBatch()
	defer b.Close()
	counts := map[string]int64{}
	written := make(map[int64]Summary, len(sums))
	for i := range sums {
		s := &sums[i]
		old, err := written[s.Candid], error(nil)
		switch {
		case old.Topic != "":
		case s.Candid > x.newest && !x.isRecent(s.Candid):
			err = ErrNotFound
		default:
			old, err = getRow(x.db, s.Candid)
		}
		switch {
		case err == nil && old.Topic == s.Topic && old.Partition == s.Partition && old.Offset == s.Offset:
			continue
		case err == nil:
			if err := deleteRow(b, &old); err != nil {
				return 0, err
			}
			counts[old.Topic]--
		case !errors.Is(err, ErrNotFound):
			return 0, err
		}
		row := encodeRow(s)
		b.Set(candidKey(s.Candid), row, nil)
		b.Set(objectKey(s.ObjectID, s.Candid), nil, nil)
		b.Set(timeKey(s.JD, s.Candid), row, nil)
		b.Set(skyKey(uint64(cellOf(s.RA, s.Dec)), s.Candid), skyValue(s.RA, s.Dec), nil)
		b.Set(positionKey(s.Topic, s.Partition, s.Offset), appendCandid(nil, s.Candid), nil)
		written[s.Candid] = *s
		counts[s.Topic]++
		added++
	}
	if err := x.commitCounts(b, counts); err != nil {
		return 0, err
	}
	for c := range written {
		x.noteRecent(c)
	}
	return added, nil
}

func (x *Index) isRecent(candid int64) bool {
	_, ok := x.recent[candid]
	if !ok {
		_, ok = x.former[candid]
	}
	return ok
}

// noteRecent adds a candid indexed to recent, folding the former
// generation into newest when recent is full.
func (x *Index) noteRecent(candid int64) {
	if len(x.recent) >= recentCandids {
		for c := range x.former {
			x.newest = max(x.newest, c)
		}
		x.former, x.recent = x.recent, make(map[int64]struct{}, recentCandids)
	}
	x.recent[candid] = struct{}{}
}

// commitCounts adds counts to the topics' counts in b and commits it.
func (x *Index) commitCounts(b *pebble.Batch, counts map[string]int64) error {
	next := map[string]int64{}
	for t, d := range counts {
		if d == 0 {
			continue
		}
		n := x.topics[t] + d
		next[t] = n
		if n <= 0 {
			b.Delete(metaTopicKey(t), nil)
		} else {
			b.Set(metaTopicKey(t), binary.LittleEndian.AppendUint64(nil, uint64(n)), nil)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("alertindex: commit: %w", err)
	}
	for t, n := range next {
		if n <= 0 {
			delete(x.topics, t)
		} else {
			x.topics[t] = n
		}
	}
	return nil
}

func getRow(r pebble.Reader, candid int64) (Summary, error) {
	v, closer, err := r.Get(candidKey(candid))
	if errors.Is(err, pebble.ErrNotFound) {
		return Summary{}, ErrNotFound
	}
	if err != nil {
		return Summary{}, err
	}
	defer closer.Close()
	return decodeRow(v)
}

// deleteRow removes every key of one alert.
func deleteRow(b *pebble.Batch, s *Summary) error {
	for _, k := range [][]byte{candidKey(s.Candid), objectKey(s.ObjectID, s.Candid), timeKey(s.JD, s.Candid),
		skyKey(uint64(cellOf(s.RA, s.Dec)), s.Candid), positionKey(s.Topic, s.Partition, s.Offset)} {
		if err := b.Delete(k, nil); err != nil {
			return err
		}
	}
	return nil
}

// Get returns the summary of candid, or ErrNotFound.
func (x *Index) Get(candid int64) (Summary, error) { return getRow(x.db, candid) }

// Object returns the summaries of every alert of objectID, newest first.
// At most limit are read (the newest are kept).
func (x *Index) Object(objectID string, limit int) ([]Summary, error) {
	lo := append(append([]byte{prefixObject}, objectID...), 0)
	hi := append(append([]byte{prefixObject}, objectID...), 1)
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	var out []Summary
	// Candids grow with time, so the last keys are the newest alerts.
	for it.Last(); it.Valid() && len(out) < limit; it.Prev() {
		s, err := getRow(x.db, readCandid(it.Key()[len(lo):]))
		if err != nil {
			continue // removed since the iterator's snapshot
		}
		out = append(out, s)
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].JD > out[j].JD })
	return out, nil
}

// cellOf is the leaf S2 cell of a sky position (ra as longitude, dec as
// latitude).
func cellOf(ra, dec float64) s2.CellID {
	return s2.CellIDFromLatLng(s2.LatLngFromDegrees(dec, ra))
}

func skyValue(ra, dec float64) []byte {
	b := binary.LittleEndian.AppendUint64(nil, math.Float64bits(ra))
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(dec))
}

// Separation is the angle between two sky positions, in degrees.
func Separation(ra1, dec1, ra2, dec2 float64) float64 {
	a := s2.LatLngFromDegrees(dec1, ra1)
	b := s2.LatLngFromDegrees(dec2, ra2)
	return a.Distance(b).Degrees()
}

// MaxConeCells bounds the cells covering a cone, and so the range scans
// one cone search makes.
const MaxConeCells = 24

// Cone returns the alerts within radius degrees of (ra, dec), nearest
// first, at most limit of those allow accepts (nil: all). It stops after
// reading scanMax positions and says so with truncated.
func (x *Index) Cone(ra, dec, radius float64, limit, scanMax int, allow func(*Summary) bool) (out []Summary, truncated bool, err error) {
	center := s2.PointFromLatLng(s2.LatLngFromDegrees(dec, ra))
	region := s2.CapFromCenterAngle(center, s1.Angle(radius*math.Pi/180))
	rc := &s2.RegionCoverer{MaxLevel: 30, MaxCells: MaxConeCells}
	type hit struct {
		candid int64
		sep    float64
	}
	var hits []hit
	scanned := 0
	// One iterator for every cell of the covering (in id order), each a
	// range of leaf ids.
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixSky}, UpperBound: []byte{prefixSky + 1}})
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
cells:
	for _, c := range rc.Covering(region) {
		lo := binary.BigEndian.AppendUint64([]byte{prefixSky}, uint64(c.RangeMin()))
		last := uint64(c.RangeMax())
		for ok := it.SeekGE(lo); ok; ok = it.Next() {
			k := it.Key()
			if len(k) != 17 || binary.BigEndian.Uint64(k[1:9]) > last {
				break
			}
			if scanned++; scanned > scanMax {
				truncated = true
				break cells
			}
			v := it.Value()
			if len(v) != 16 {
				continue
			}
			pra := math.Float64frombits(binary.LittleEndian.Uint64(v))
			pdec := math.Float64frombits(binary.LittleEndian.Uint64(v[8:]))
			if sep := Separation(ra, dec, pra, pdec); sep <= radius {
				hits = append(hits, hit{readCandid(k[9:]), sep})
			}
		}
	}
	if err := it.Error(); err != nil {
		return nil, false, err
	}
	sort.Slice(hits, func(i, j int) bool { return hits[i].sep < hits[j].sep })
	for _, h := range hits {
		if len(out) >= limit {
			break
		}
		s, err := getRow(x.db, h.candid)
		if err != nil {
			continue
		}
		if allow == nil || allow(&s) {
			out = append(out, s)
		}
	}
	return out, truncated, nil
}

// Window asks for the alerts observed between two Julian dates.
type Window struct {
	Since, Until float64 // JD; Until is exclusive
	// After resumes a listing after this position (Cursor of a page).
	After *Cursor
	Limit int
	// ScanMax bounds the entries read; a page that reaches it ends early
	// with a cursor.
	ScanMax int
	// Match filters; nil accepts every alert.
	Match func(*Summary) bool
}

// Cursor is the position after the last alert of a page: its time and
// candid.
type Cursor struct {
	JD     float64
	Candid int64
}

// Window lists alerts in time order. next is nil when the window is done.
func (x *Index) Window(w Window) (out []Summary, next *Cursor, err error) {
	w.Limit, w.ScanMax = max(w.Limit, 1), max(w.ScanMax, 1)
	lo := appendJD([]byte{prefixTime}, w.Since)
	if w.After != nil {
		lo = appendCandid(appendJD([]byte{prefixTime}, w.After.JD), w.After.Candid)
		lo = append(lo, 0) // just after it
	}
	hi := appendJD([]byte{prefixTime}, w.Until)
	if bytes.Compare(lo, hi) >= 0 {
		return nil, nil, nil
	}
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, nil, err
	}
	defer it.Close()
	scanned := 0
	var last []byte
	for it.First(); it.Valid(); it.Next() {
		if len(out) >= w.Limit || scanned >= w.ScanMax {
			c := Cursor{JD: readJD(last[1:9]), Candid: readCandid(last[9:17])}
			return out, &c, nil
		}
		scanned++
		last = append(last[:0], it.Key()...)
		s, err := decodeRow(it.Value())
		if err != nil {
			continue
		}
		if w.Match == nil || w.Match(&s) {
			out = append(out, s)
		}
	}
	return out, nil, it.Error()
}

// Topics returns each indexed topic's count of alerts.
func (x *Index) Topics() map[string]int64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	m := make(map[string]int64, len(x.topics))
	for t, n := range x.topics {
		m[t] = n
	}
	return m
}

// Count is the number of alerts indexed.
func (x *Index) Count() int64 {
	var n int64
	for _, c := range x.Topics() {
		n += c
	}
	return n
}

// Partitions lists the partitions of topic that have alerts indexed.
func (x *Index) Partitions(topic string) ([]int32, error) {
	pre := append(append([]byte{prefixPosition}, topic...), 0)
	var out []int32
	for {
		lo := pre
		if len(out) > 0 {
			lo = binary.BigEndian.AppendUint32(bytes.Clone(pre), uint32(out[len(out)-1])+1)
		}
		it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: append(bytes.Clone(pre[:len(pre)-1]), 1)})
		if err != nil {
			return nil, err
		}
		ok := it.First()
		var p int32
		if ok && len(it.Key()) >= len(pre)+4 {
			p = int32(binary.BigEndian.Uint32(it.Key()[len(pre):]))
		}
		if err := it.Close(); err != nil {
			return nil, err
		}
		if !ok || (len(out) > 0 && p <= out[len(out)-1]) {
			return out, nil
		}
		out = append(out, p)
		if p == math.MaxInt32 {
			return out, nil
		}
	}
}

// Prune removes the alerts of a partition stored below logStart (the
// partition's log start offset: retention deleted the segments that held
// them). logStart < 0 removes every alert of the partition.
func (x *Index) Prune(topic string, partition int32, logStart int64) (int, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	lo := partitionPrefix(topic, partition)
	hi := positionKey(topic, partition, math.MaxInt64)
	if logStart >= 0 {
		hi = positionKey(topic, partition, logStart)
	}
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return 0, err
	}
	b := x.db.NewIndexedBatch()
	defer func() { b.Close() }()
	removed := 0
	for it.First(); it.Valid(); it.Next() {
		s, err := getRow(x.db, readCandid(it.Value()))
		if err != nil || s.Topic != topic || s.Partition != partition {
			b.Delete(bytes.Clone(it.Key()), nil) // a stale position
			continue
		}
		if err := deleteRow(b, &s); err != nil {
			it.Close()
			return 0, err
		}
		removed++
		if removed%10000 == 0 { // bound the batch
			err := x.commitCounts(b, map[string]int64{topic: -10000})
			b.Close()
			if err != nil {
				it.Close()
				return 0, err
			}
			b = x.db.NewIndexedBatch()
		}
	}
	if err := it.Close(); err != nil {
		return 0, err
	}
	if err := x.commitCounts(b, map[string]int64{topic: -int64(removed % 10000)}); err != nil {
		return 0, err
	}
	return removed, nil
}

// Digest is a SHA-256 over every key and value but the counts, in order:
// two indexes of the same alerts at the same places have the same digest.
func (x *Index) Digest() (string, int64, error) {
	it, err := x.db.NewIter(&pebble.IterOptions{})
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	var n int64
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if k[0] == prefixMeta {
			continue
		}
		if k[0] == prefixCandid {
			n++
		}
		binary.Write(h, binary.LittleEndian, uint32(len(k)))
		h.Write(k)
		binary.Write(h, binary.LittleEndian, uint32(len(it.Value())))
		h.Write(it.Value())
	}
	if err := it.Close(); err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// Each calls fn with every alert's summary, in candid order, until fn
// returns false.
func (x *Index) Each(fn func(Summary) bool) error {
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixCandid}, UpperBound: []byte{prefixCandid + 1}})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		s, err := decodeRow(it.Value())
		if err != nil {
			continue
		}
		if !fn(s) {
			break
		}
	}
	return it.Close()
}

// DiskBytes is the size of the store's files.
func (x *Index) DiskBytes() uint64 {
	m := x.db.Metrics()
	return m.DiskSpaceUsage()
}

// Flush writes the memtable out, so DiskBytes counts everything.
func (x *Index) Flush() error { return x.db.Flush() }

// Compact compacts the whole store, as it settles when left alone.
func (x *Index) Compact() error {
	return x.db.Compact([]byte{0}, []byte{0xff}, true)
}
