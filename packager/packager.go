package packager

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

// Producer is where alerts go: a *kgo.Client satisfies it, connected to the
// embedded broker or to any Kafka cluster. The promise is called once the
// record is acknowledged (acks=all) or failed. When it is a *kgo.Client, the
// packager also creates each topic before its first alert (see topicSetup).
type Producer interface {
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
}

// flusher is implemented by *kgo.Client; the packager flushes after the last
// alert of an exposure rather than wait out the linger.
type flusher interface {
	Flush(ctx context.Context) error
}

// Source yields exposures; Next returns io.EOF when there are no more.
type Source interface {
	Next(ctx context.Context) (*Exposure, error)
}

// Exposure is one camera exposure's worth of input.
type Exposure struct {
	// ID names the exposure in logs and reject messages.
	ID string
	// Arrived is when the exposure reached the packager; latency runs from it
	// to the last acknowledgement.
	Arrived time.Time
	// Detections become alerts; each carries its object's history.
	Detections []Detection
	// Limits are upper limits (prv_candidate rows with null candid) of
	// objects not detected in this exposure; kept in history only.
	Limits []Row[PrvCandidate]
	// Forced is forced photometry at known objects; kept in history only.
	Forced []Row[FpHist]
	// Raw are alerts already serialized (replay): produced as they are.
	Raw []RawAlert
	// Rejects are inputs the source already refused.
	Rejects []Reject
}

// nightSource is a Source whose night begins when it is run and whose
// alerts all belong to one program (the simulation).
type nightSource interface {
	Source
	Programid() int
}

// Detection is one candidate with its object and cutouts.
type Detection struct {
	ObjectID   string
	Candidate  Candidate
	Science    Cutout
	Template   Cutout
	Difference Cutout
}

// Row is a history row of an object.
type Row[T any] struct {
	ObjectID string
	Row      T
}

// Result is what Package did with one exposure.
type Result struct {
	Alerts   int // acknowledged
	Failed   int // produce failed
	Rejected int
	Bytes    int64
	Latency  time.Duration
}

// Packager turns exposures into alerts on the night's topics.
type Packager struct {
	cfg       Config
	schema    *Schema
	hist      *History
	prod      Producer
	topics    *topicSetup // creates each topic stating its format
	log       *zap.Logger
	m         *metrics
	sync      [16]byte
	header    []byte      // container header for the 4.02 schema and sync
	head      avro.Schema // the alert fields before prv_candidates
	pruned    float64     // observation date of the last prune: one a day
	writers   sync.Pool
	closeOnce sync.Once
}

// New opens the history store and returns a packager writing to prod.
// logger may be nil; reg may be nil (metrics are then not registered). The
// producer stays the caller's: Close does not close it.
func New(cfg Config, prod Producer, logger *zap.Logger, reg prometheus.Registerer) (*Packager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if prod == nil {
		return nil, errors.New("packager: nil producer")
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = zap.NewNop()
	}
	schema, err := LoadSchema()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	header := avrofile.NewHeader(schema.Text)
	p := &Packager{cfg: cfg, schema: schema, prod: prod, log: logger, m: m,
		sync: header.Sync, header: avrofile.AppendHeader(nil, header)}
	p.topics = newTopicSetup(prod, cfg.SchemaID, cfg.Partitions, logger)
	if p.head, err = headSchema(schema); err != nil {
		return nil, err
	}
	p.writers.New = func() any { return avro.NewWriter(nil, 64<<10) }
	if p.hist, err = OpenHistory(cfg.HistoryDir, schema, cfg.HistoryMemory); err != nil {
		return nil, err
	}
	return p, nil
}

// Schema is the 4.02 schema the packager writes.
func (p *Packager) Schema() *Schema { return p.schema }

// History is the packager's history store.
func (p *Packager) History() *History { return p.hist }

// Close closes the history store; safe to call twice.
func (p *Packager) Close() error {
	var err error
	p.closeOnce.Do(func() { err = p.hist.Close() })
	return err
}

// Run packages the exposures of the configured source until it ends
// (replay, or simulate with Exposures set) or ctx is done. With no source
// configured it waits for ctx. A cancelled context is not an error.
func (p *Packager) Run(ctx context.Context) error {
	src, err := p.NewSource()
	if err != nil {
		return err
	}
	if src == nil {
		<-ctx.Done()
		return nil
	}
	return p.RunSource(ctx, src)
}

// NewSource builds the source Config.Source names; nil for none.
func (p *Packager) NewSource() (Source, error) {
	s := p.cfg.Source
	switch s.Kind {
	case SourceSimulate:
		return NewSimulation(s.Simulate, p.cfg.Clock)
	case SourceIngest:
		return NewIngest(s.IngestDir, s.IngestPoll, p.cfg.Clock, p.schema), nil
	case SourceReplay:
		return NewReplay(s.ReplayPaths, p.cfg.Clock)
	}
	return nil, nil
}

// RunSource packages every exposure src yields. Only the source's errors
// end it; an exposure that fails to package is logged and counted.
func (p *Packager) RunSource(ctx context.Context, src Source) error {
	if n, ok := src.(nightSource); ok {
		// The night begins now: tonight's topic is made at once, with
		// its partitions and format, before a consumer that asks for it
		// ahead of the first exposure auto-creates it with the cluster's
		// defaults (one partition, no format).
		p.topics.ensure(ctx, p.Topic(TimeJD(p.cfg.Clock()), n.Programid()), p.cfg.Format)
	}
	for {
		exp, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		res, err := p.Package(ctx, exp)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			// A broker outage must not stop a night: the failures are
			// counted, the exposure is not marked done, the next one goes on.
			p.log.Error("exposure not fully packaged", zap.String("exposure", exp.ID), zap.Error(err))
			continue
		}
		p.log.Info("exposure packaged", zap.String("exposure", exp.ID), zap.Int("alerts", res.Alerts),
			zap.Int("rejected", res.Rejected), zap.Int("failed", res.Failed), zap.Duration("latency", res.Latency))
		if d, ok := src.(interface{ Done(*Exposure) error }); ok {
			if err := d.Done(exp); err != nil {
				return err
			}
		}
	}
}

// Topic is the night's topic of an alert: ztf_<UT date>_programid<N>.
func (p *Packager) Topic(jd float64, programid int) string {
	if p.cfg.Topic != "" {
		return p.cfg.Topic
	}
	return NightTopic(jd, programid)
}

// NightTopic names the topic of a night as ZTF does: the UT date of the
// observation and the program id (1 public, 2 partnership, 3 Caltech).
func NightTopic(jd float64, programid int) string {
	return "ztf_" + JDTime(jd).Format("20060102") + "_programid" + strconv.Itoa(programid)
}

// JDTime converts a Julian date to UTC.
func JDTime(jd float64) time.Time {
	const unixEpochJD = 2440587.5
	return time.Unix(0, int64((jd-unixEpochJD)*86400e9)).UTC()
}

// TimeJD converts a time to a Julian date.
func TimeJD(t time.Time) float64 {
	return float64(t.UnixNano())/86400e9 + 2440587.5
}

// Package builds, produces and waits for the acknowledgement of every alert
// of exp, then records the exposure in history. Refused inputs are written to
// the reject folder and counted; they do not stop the rest.
func (p *Packager) Package(ctx context.Context, exp *Exposure) (Result, error) {
	arrived := exp.Arrived
	if arrived.IsZero() {
		arrived = p.cfg.Clock()
	}
	var res Result
	for _, r := range exp.Rejects {
		p.reject(r)
		res.Rejected++
	}

	var (
		mu      sync.Mutex
		errs    []error
		pending sync.WaitGroup
	)
	promise := func(r *kgo.Record, err error) {
		mu.Lock()
		if err != nil {
			res.Failed++
			if len(errs) < 5 {
				errs = append(errs, fmt.Errorf("produce %s key %s: %w", r.Topic, r.Key, err))
			}
		} else {
			res.Alerts++
			res.Bytes += int64(len(r.Value))
		}
		mu.Unlock()
		if w, ok := r.Context.Value(writerKey{}).(*[]byte); ok {
			bufPool.Put(w)
		}
		pending.Done()
	}

	for _, a := range exp.Raw {
		topic := ""
		if a.JD == 0 {
			topic = p.Topic(TimeJD(arrived), 1)
		} else {
			pid := a.Programid
			if pid == 0 {
				pid = 1
			}
			topic = p.Topic(a.JD, pid)
		}
		// Replayed alerts go out as the container files they are.
		p.topics.ensure(ctx, topic, FormatOCF)
		pending.Add(1)
		p.prod.Produce(ctx, &kgo.Record{Topic: topic, Key: a.Key, Value: a.Value, Context: context.Background()}, promise)
	}

	// The detections are encoded by Workers goroutines, each producing as it
	// goes; history rows are read before this exposure's are written.
	var refused []Reject
	if n := len(exp.Detections); n > 0 {
		workers := min(p.cfg.Workers, n)
		next := make(chan int, n)
		for i := range n {
			next <- i
		}
		close(next)
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					d := &exp.Detections[i]
					rec, err := p.encode(d)
					if err != nil {
						mu.Lock()
						refused = append(refused, Reject{Exposure: exp.ID, Candidate: strconv.FormatInt(d.Candidate.Candid, 10), Field: "alert", Reason: err.Error()})
						mu.Unlock()
						continue
					}
					p.topics.ensure(ctx, rec.Topic, p.cfg.Format)
					pending.Add(1)
					p.prod.Produce(ctx, rec, promise)
				}
			}()
		}
		wg.Wait()
	}
	for _, r := range refused {
		p.reject(r)
		res.Rejected++
	}
	if f, ok := p.prod.(flusher); ok {
		go func() { _ = f.Flush(ctx) }()
	}

	// History is written while the acknowledgements come back.
	histErr := p.record(exp)
	pending.Wait()
	res.Latency = p.cfg.Clock().Sub(arrived)

	p.m.alerts.Add(float64(res.Alerts))
	p.m.bytes.Add(float64(res.Bytes))
	p.m.failed.Add(float64(res.Failed))
	if res.Alerts+res.Failed > 0 {
		p.m.latency.Observe(res.Latency.Seconds())
	}
	if histErr != nil {
		errs = append(errs, histErr)
	}
	if len(errs) > 0 {
		return res, fmt.Errorf("packager: exposure %s: %w", exp.ID, errors.Join(errs...))
	}
	return res, nil
}

type writerKey struct{}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 96<<10); return &b }}

// alertHead is the start of an alert record: its fields before
// prv_candidates, encoded with headSchema. The rest of the record (history
// rows as stored, cutouts) is appended as bytes: an Avro record is its fields
// laid end to end.
type alertHead struct {
	Schemavsn string     `avro:"schemavsn"`
	Publisher string     `avro:"publisher"`
	ObjectID  string     `avro:"objectId"`
	Candid    int64      `avro:"candid"`
	Candidate *Candidate `avro:"candidate"`
}

// encode builds the alert of d with its history and frames it per Format.
func (p *Packager) encode(d *Detection) (*kgo.Record, error) {
	c := &d.Candidate
	prv, fp, err := p.hist.GetRaw(d.ObjectID, c.JD-p.cfg.HistoryDays, c.JD)
	if err != nil {
		return nil, err
	}
	w := p.writers.Get().(*avro.Writer)
	defer p.writers.Put(w)
	w.Reset(nil)
	w.Error = nil
	w.WriteVal(p.head, &alertHead{SchemaVersion, p.cfg.Publisher, d.ObjectID, c.Candid, c})
	if w.Error != nil {
		return nil, fmt.Errorf("encode: %w", w.Error)
	}
	head := w.Buffer()
	cutouts := [3]*Cutout{&d.Science, &d.Template, &d.Difference}

	bp := bufPool.Get().(*[]byte)
	v := (*bp)[:0]
	switch p.cfg.Format {
	case FormatConfluent:
		v = append(v, 0)
		v = binary.BigEndian.AppendUint32(v, uint32(p.cfg.SchemaID))
		v = appendBody(v, head, prv, fp, cutouts)
	default:
		v = append(v, p.header...)
		v = avrofile.AppendLong(v, 1)
		v = avrofile.AppendLong(v, int64(bodySize(head, prv, fp, cutouts)))
		v = appendBody(v, head, prv, fp, cutouts)
		v = append(v, p.sync[:]...)
	}
	*bp = v
	return &kgo.Record{
		Topic:   p.Topic(c.JD, c.Programid),
		Key:     []byte(d.ObjectID),
		Value:   v,
		Context: context.WithValue(context.Background(), writerKey{}, bp),
	}, nil
}

// bodySize is len(appendBody(nil, ...)).
func bodySize(head []byte, prv, fp [][]byte, cutouts [3]*Cutout) int {
	n := len(head)
	for _, rows := range [2][][]byte{prv, fp} {
		n++ // union index
		if len(rows) == 0 {
			continue
		}
		n += longSize(int64(len(rows))) + 1 // count, terminating 0
		for _, r := range rows {
			n += len(r)
		}
	}
	for _, ct := range cutouts {
		n += 1 + longSize(int64(len(ct.FileName))) + len(ct.FileName) + longSize(int64(len(ct.StampData))) + len(ct.StampData)
	}
	return n
}

func longSize(v int64) int {
	u := uint64((v << 1) ^ (v >> 63))
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}

// appendBody appends the alert record: head, then prv_candidates and
// fp_hists (union ["null", array]), then the three cutouts (union ["null",
// cutout]).
func appendBody(v, head []byte, prv, fp [][]byte, cutouts [3]*Cutout) []byte {
	v = append(v, head...)
	for _, rows := range [2][][]byte{prv, fp} {
		if len(rows) == 0 {
			v = avrofile.AppendLong(v, 0) // null
			continue
		}
		v = avrofile.AppendLong(v, 1)
		v = avrofile.AppendLong(v, int64(len(rows)))
		for _, r := range rows {
			v = append(v, r...)
		}
		v = avrofile.AppendLong(v, 0)
	}
	for _, ct := range cutouts {
		v = avrofile.AppendLong(v, 1)
		v = avrofile.AppendBytes(v, []byte(ct.FileName))
		v = avrofile.AppendBytes(v, ct.StampData)
	}
	return v
}

// record writes the exposure's detections, limits and forced photometry to
// history and prunes rows past HistoryDays.
func (p *Packager) record(exp *Exposure) error {
	if len(exp.Detections)+len(exp.Limits)+len(exp.Forced) == 0 {
		return nil
	}
	b := p.hist.Batch()
	latest := 0.0
	for i := range exp.Detections {
		d := &exp.Detections[i]
		row := prvFromCandidate(&d.Candidate)
		if err := b.AddDetection(d.ObjectID, &row); err != nil {
			return err
		}
		latest = max(latest, d.Candidate.JD)
	}
	for i := range exp.Limits {
		if err := b.AddDetection(exp.Limits[i].ObjectID, &exp.Limits[i].Row); err != nil {
			return err
		}
		latest = max(latest, exp.Limits[i].Row.JD)
	}
	for i := range exp.Forced {
		if err := b.AddForced(exp.Forced[i].ObjectID, &exp.Forced[i].Row); err != nil {
			return err
		}
		latest = max(latest, exp.Forced[i].Row.JD)
	}
	if err := b.Commit(); err != nil {
		return err
	}
	if latest-p.pruned < 1 {
		return nil
	}
	n, err := p.hist.Prune(latest - p.cfg.HistoryDays)
	if err != nil {
		return err
	}
	p.pruned = latest
	p.log.Debug("history pruned", zap.Int("rows", n))
	return nil
}
