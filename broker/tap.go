package broker

import (
	"io"
)

// Tap is told of the records appended to the topics it wants, once their
// append is acknowledged (durable per the topic's flush policy, so visible
// to consumers), with a copy of each record's key and of the first bytes of
// its value. It is for a consumer inside the process (the portal's index)
// that would otherwise fetch and decompress again what the broker has just
// decompressed to validate it: the copies are taken during that validation.
//
// A tap is a hint, never the record of truth: the broker calls it from the
// produce path and never waits for it, so Appended must not block (a full
// tap drops), and Missed says that records of a partition were, or may have
// been, appended without being handed over. A consumer keeps reading the
// log for whatever its tap does not continue exactly.
//
// The methods take only built-in types, so that a package below cmd
// implements Tap without importing broker.
type Tap interface {
	// Wants is how many leading bytes of each value of topic the tap
	// keeps; 0: the topic is not tapped. Called once per produce request.
	Wants(topic string) int
	// Appended hands over one record, in offset order within each
	// produce request; the tap owns key and value (nil key: a null key;
	// value holds at most Wants bytes of a value of valueLen bytes, -1:
	// null).
	Appended(topic string, partition int32, offset int64, key, value []byte, valueLen int)
	// Missed says that records of the partition were appended but not
	// handed over (a retried batch, a write or fsync that failed after
	// writing, a request whose acknowledgement never came).
	Missed(topic string, partition int32)
	// Buffer returns n bytes to copy a value's prefix into: the tap may
	// hand out buffers it recycles, sparing the produce path an
	// allocation (and its zeroing) per record. What the copy does not
	// fill is never read.
	Buffer(n int) []byte
}

// maxTapPrefix bounds the bytes of each value a tap is handed.
const maxTapPrefix = 1 << 20

// SetTap installs the tap; nil removes it.
func (b *Broker) SetTap(t Tap) {
	if t == nil {
		b.tap.Store(nil)
		return
	}
	b.tap.Store(&t)
}

// tapCapture collects, while a produce request's batches are validated,
// each record's offset delta, key and value prefix for a Tap.
type tapCapture struct {
	tap     Tap
	want    int // leading value bytes kept
	recs    []tapRecord
	key     []byte     // the key of the record being read
	batches []tapBatch // noted while the request's bytes are still its own
}

// tapBatch is what appended needs of one checked batch: its records and
// the offsets it spans. It is noted while the produce request is handled,
// because the request's buffer is reused for the connection's next frame
// before the acknowledgement that calls appended.
type tapBatch struct {
	records int
	span    int64
}

type tapRecord struct {
	delta      int64
	key, value []byte
	valueLen   int
}

// tapCaptureFor returns a capture when a tap wants topic, else nil.
func (b *Broker) tapCaptureFor(topic string) *tapCapture {
	t := b.tap.Load()
	if t == nil {
		return nil
	}
	want := (*t).Wants(topic)
	if want <= 0 {
		return nil
	}
	return &tapCapture{tap: *t, want: min(want, maxTapPrefix)}
}

// noteBatches keeps what appended needs of the request's batches.
func (c *tapCapture) noteBatches(batches []checkedBatch) {
	if c == nil {
		return
	}
	c.batches = make([]tapBatch, len(batches))
	for i, bt := range batches {
		c.batches[i] = tapBatch{records: int(bt.recordCount()), span: int64(bt.lastOffsetDelta()) + 1}
	}
}

// appended hands the captured records to the tap once the batches are
// acknowledged: first and end are what partition.write returned. Each
// batch's records are the next of the capture, at offsets from its base;
// a request whose offsets are not one run from first (a retried batch
// written before) is not handed over but reported missed.
func (c *tapCapture) appended(topic string, partition int32, first, end int64) {
	if c == nil {
		return
	}
	span, n := int64(0), 0
	for _, bt := range c.batches {
		span += bt.span
		n += bt.records
	}
	if first < 0 || end-first != span || n != len(c.recs) {
		c.tap.Missed(topic, partition)
		return
	}
	recs, base := c.recs, first
	for _, bt := range c.batches {
		for _, r := range recs[:bt.records] {
			c.tap.Appended(topic, partition, base+r.delta, r.key, r.value, r.valueLen)
		}
		recs, base = recs[bt.records:], base+bt.span
	}
}

// missed reports that the capture's records may be in the log without
// having been handed over.
func (c *tapCapture) missed(topic string, partition int32) {
	if c != nil {
		c.tap.Missed(topic, partition)
	}
}

// skipKey steps over a record's key of n bytes (-1: null), keeping a copy
// for the tap.
func (w *recordWalker) skipKey(n int64) error {
	if w.tap == nil || n < 0 {
		if n > 0 {
			return w.skip(n)
		}
		return nil
	}
	w.tap.key = nil
	keep := min(n, int64(w.tap.want))
	if err := w.keep(&w.tap.key, make([]byte, keep)); err != nil {
		return err
	}
	return w.skip(n - keep)
}

// skipValue steps over a record's value of n bytes (-1: null), keeping its
// first bytes for the tap with the record's offset delta.
func (w *recordWalker) skipValue(offsetDelta, n int64) error {
	if w.tap == nil {
		if n > 0 {
			return w.skip(n)
		}
		return nil
	}
	r := tapRecord{delta: offsetDelta, key: w.tap.key, valueLen: int(n)}
	w.tap.key = nil
	if n >= 0 {
		keep := min(n, int64(w.tap.want))
		if err := w.keep(&r.value, w.tap.tap.Buffer(int(keep))[:keep]); err != nil {
			return err
		}
		if err := w.skip(n - keep); err != nil {
			return err
		}
	}
	w.tap.recs = append(w.tap.recs, r)
	return nil
}

// keep reads len(p) bytes of the record into p and sets *dst to it.
func (w *recordWalker) keep(dst *[]byte, p []byte) error {
	if n := int64(len(p)); n > w.rem {
		return malformed("%d bytes past the record's length", n-w.rem)
	}
	var got int
	var err error
	switch s := w.src.(type) {
	case *sliceSource:
		got = copy(p, s.b)
		s.b = s.b[got:]
		if got < len(p) {
			err = io.EOF
		}
	case io.Reader:
		got, err = io.ReadFull(s, p)
	default:
		for got < len(p) && err == nil {
			p[got], err = s.ReadByte()
			if err == nil {
				got++
			}
		}
	}
	w.rem -= int64(got)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return malformed("records end inside a record")
	}
	if err != nil {
		return err
	}
	*dst = p
	return nil
}
