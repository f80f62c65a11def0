package packager

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/cockroachdb/pebble"
	"github.com/hamba/avro/v2"
)

// History is the per-object photometry of the last days in pebble: each
// detection and upper limit (as ztf.alert.prv_candidate) and each forced
// photometry point (as ztf.alert.fp_hist), Avro binary encoded with those
// record schemas of 4.02.
//
// Keys (part of the on-disk format):
//
//	'o' objectId 0x00 jd(8, big-endian IEEE bits) kind(1) id(8)  -> row
//
// kind is 'd' detection, 'u' upper limit, 'f' forced photometry; id is the
// candid of a detection and the pid of the image otherwise. Julian dates are
// positive, so their IEEE bits sort as the dates do, and one object's rows of
// a date range are one key range. There is no time index: pruning scans the
// store, at most once a day of observation time, which costs less than
// writing a second key for each of the tens of thousands of rows an exposure
// adds.
type History struct {
	db     *pebble.DB
	schema *Schema
}

// Row kinds in history keys.
const (
	kindDetection = 'd'
	kindLimit     = 'u'
	kindForced    = 'f'
)

// HistoryMemory sizes the store's memory; zero fields take the defaults.
type HistoryMemory struct {
	// CacheBytes is pebble's block cache: the rows of the last visits are
	// read for every alert, so they are kept cached (default 128 MiB).
	CacheBytes int64
	// MemTableBytes is one memtable; pebble holds up to two (default 32 MiB).
	MemTableBytes int64
}

// Default history memory: an eighth and two thirty-seconds of serve's
// default 1 GiB budget.
const (
	DefaultHistoryCacheBytes    = 128 << 20
	DefaultHistoryMemTableBytes = 32 << 20
)

// OpenHistory opens (or creates) the store in dir.
func OpenHistory(dir string, schema *Schema, mem HistoryMemory) (*History, error) {
	if mem.CacheBytes <= 0 {
		mem.CacheBytes = DefaultHistoryCacheBytes
	}
	if mem.MemTableBytes <= 0 {
		mem.MemTableBytes = DefaultHistoryMemTableBytes
	}
	cache := pebble.NewCache(mem.CacheBytes)
	defer cache.Unref()
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietPebble{}, Cache: cache, MemTableSize: uint64(mem.MemTableBytes)})
	if err != nil {
		return nil, fmt.Errorf("packager: open history %s: %w", dir, err)
	}
	return &History{db: db, schema: schema}, nil
}

// Close closes the store.
func (h *History) Close() error { return h.db.Close() }

func objectKey(objectID string, jd float64, kind byte, id int64) []byte {
	k := make([]byte, 0, 1+len(objectID)+1+8+1+8)
	k = append(k, 'o')
	k = append(k, objectID...)
	k = append(k, 0)
	k = binary.BigEndian.AppendUint64(k, math.Float64bits(jd))
	k = append(k, kind)
	return binary.BigEndian.AppendUint64(k, uint64(id))
}

// HistoryBatch collects the rows of one exposure, committed together.
type HistoryBatch struct {
	h    *History
	rows []kv
}

type kv struct{ k, v []byte }

// Batch starts a batch.
func (h *History) Batch() *HistoryBatch { return &HistoryBatch{h: h} }

func (hb *HistoryBatch) put(objectID string, jd float64, kind byte, id int64, schema avro.Schema, v any) error {
	val, err := avro.Marshal(schema, v)
	if err != nil {
		return fmt.Errorf("packager: encode history row of %s: %w", objectID, err)
	}
	hb.rows = append(hb.rows, kv{objectKey(objectID, jd, kind, id), val})
	return nil
}

// AddDetection records a detection (or, with Candid nil, an upper limit).
func (hb *HistoryBatch) AddDetection(objectID string, p *PrvCandidate) error {
	if p.Candid != nil {
		return hb.put(objectID, p.JD, kindDetection, *p.Candid, hb.h.schema.PrvCandidate, p)
	}
	return hb.put(objectID, p.JD, kindLimit, p.Pid, hb.h.schema.PrvCandidate, p)
}

// AddForced records a forced-photometry point.
func (hb *HistoryBatch) AddForced(objectID string, f *FpHist) error {
	return hb.put(objectID, f.JD, kindForced, f.Pid, hb.h.schema.FpHist, f)
}

// Commit writes the batch durably.
func (hb *HistoryBatch) Commit() error {
	// Sorted keys go into the memtable's skiplist several times faster.
	slices.SortFunc(hb.rows, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
	b := hb.h.db.NewBatch()
	defer b.Close()
	for _, r := range hb.rows {
		if err := b.Set(r.k, r.v, nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("packager: commit history: %w", err)
	}
	return nil
}

// Get returns the rows of objectID with from <= jd < to, oldest first.
func (h *History) Get(objectID string, from, to float64) ([]PrvCandidate, []FpHist, error) {
	rawPrv, rawFp, err := h.GetRaw(objectID, from, to)
	if err != nil {
		return nil, nil, err
	}
	prv := make([]PrvCandidate, len(rawPrv))
	for i, b := range rawPrv {
		if err := avro.Unmarshal(h.schema.PrvCandidate, b, &prv[i]); err != nil {
			return nil, nil, fmt.Errorf("packager: history row of %s: %w", objectID, err)
		}
	}
	fp := make([]FpHist, len(rawFp))
	for i, b := range rawFp {
		if err := avro.Unmarshal(h.schema.FpHist, b, &fp[i]); err != nil {
			return nil, nil, fmt.Errorf("packager: history row of %s: %w", objectID, err)
		}
	}
	return prv, fp, nil
}

// GetRaw is Get without decoding: each row is the Avro binary encoding of a
// prv_candidate or fp_hist, so an alert's arrays are these rows laid end to
// end and need no re-encoding.
func (h *History) GetRaw(objectID string, from, to float64) (prv, fp [][]byte, err error) {
	lo := objectKey(objectID, from, 0, 0)
	hi := objectKey(objectID, to, 0, 0)
	it, err := h.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, nil, err
	}
	kindAt := 1 + len(objectID) + 1 + 8
	var arena []byte
	type span struct {
		kind       byte
		start, end int
	}
	var spans []span
	for it.First(); it.Valid(); it.Next() {
		start := len(arena)
		arena = append(arena, it.Value()...)
		spans = append(spans, span{it.Key()[kindAt], start, len(arena)})
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, nil, err
	}
	for _, s := range spans {
		row := arena[s.start:s.end:s.end]
		switch s.kind {
		case kindDetection, kindLimit:
			prv = append(prv, row)
		case kindForced:
			fp = append(fp, row)
		}
	}
	return prv, fp, nil
}

// Prune deletes every row older than jd and returns how many.
func (h *History) Prune(before float64) (int, error) {
	it, err := h.db.NewIter(&pebble.IterOptions{LowerBound: []byte{'o'}, UpperBound: []byte{'p'}})
	if err != nil {
		return 0, err
	}
	b := h.db.NewBatch()
	defer b.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) < 1+1+8+1+8 {
			continue
		}
		jd := math.Float64frombits(binary.BigEndian.Uint64(k[len(k)-17 : len(k)-9]))
		if jd >= before {
			continue
		}
		if err := b.Delete(k, nil); err != nil {
			return 0, errors.Join(err, it.Close())
		}
		n++
	}
	if err := it.Close(); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	return n, b.Commit(pebble.Sync)
}

type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
