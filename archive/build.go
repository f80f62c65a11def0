package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/durable"
)

var (
	// ErrNoTopic means the night's topic does not exist on the cluster.
	ErrNoTopic = errors.New("archive: topic not found")
	// ErrBusy means another run is building the same archive.
	ErrBusy = errors.New("archive: another run is building this night")
)

const (
	DefaultLevel           = 6
	DefaultCheckpointBytes = 64 << 20
)

// Job is one archive run: one night of one program, into OutDir.
type Job struct {
	Bootstrap []string
	Night     Night
	Program   Program
	// Topic overrides Topic(Night, Program).
	Topic  string
	OutDir string
	// Level is the gzip level, 1-9 (0 means DefaultLevel).
	Level int
	// CheckpointBytes is the tar input between checkpoints (0 means
	// DefaultCheckpointBytes).
	CheckpointBytes int64
	// Workers compress in parallel (0 means GOMAXPROCS).
	Workers int
	// ClientOpts are extra kgo options (TLS, SASL, ...).
	ClientOpts []kgo.Opt
	// Schemas finds the writer schema of Confluent-framed messages, which
	// are archived as container files (see MemberBase). Nil: such messages
	// are kept verbatim as nocandid_ members.
	Schemas SchemaLookup
	// Progress, when set, gets a one-line progress bar redrawn with \r.
	Progress io.Writer
	Logger   *zap.Logger

	// afterCheckpoint lets tests stop a run at a known point.
	afterCheckpoint func(n int)
}

// Result says what a finished run wrote.
type Result struct {
	Path       string
	Members    int64 // alert members, MD5SUMS not counted
	NoCandid   int64 // members kept under nocandid_ names
	InputBytes int64 // the tar stream
	Size       int64 // the .tar.gz
	Resumed    bool
	Elapsed    time.Duration
	Ranges     []PartitionRange
}

// Build archives a night's topic into OutDir, resuming a killed run of the
// same night when its checkpoint is there.
func Build(ctx context.Context, job Job) (Result, error) {
	start := time.Now()
	if err := job.fill(); err != nil {
		return Result{}, err
	}
	r := &run{job: job, paths: pathsFor(job.OutDir, FileName(job.Night, job.Program)), log: job.Logger}
	if err := os.MkdirAll(job.OutDir, 0o755); err != nil {
		return Result{}, err
	}
	opts := append([]kgo.Opt{kgo.SeedBrokers(job.Bootstrap...)}, job.ClientOpts...)
	admin, err := kgo.NewClient(opts...)
	if err != nil {
		return Result{}, err
	}
	defer admin.Close()
	r.opts = opts

	unlock, err := lockRun(r.paths)
	if err != nil {
		return Result{}, err
	}
	defer unlock()
	defer r.abort()
	if err := r.open(ctx, kadm.NewClient(admin)); err != nil {
		return Result{}, err
	}
	if err := r.consume(ctx); err != nil {
		return Result{}, err
	}
	if err := r.finish(); err != nil {
		return Result{}, err
	}
	return Result{
		Path:       r.paths.final,
		Members:    r.ck.Members,
		NoCandid:   r.ck.NoCandid,
		InputBytes: r.input,
		Size:       r.size,
		Resumed:    r.resumed,
		Elapsed:    time.Since(start),
		Ranges:     r.ck.Ranges,
	}, nil
}

func (j *Job) fill() error {
	var errs []error
	if len(j.Bootstrap) == 0 {
		errs = append(errs, errors.New("archive: bootstrap: no broker given"))
	}
	if j.Night.IsZero() {
		errs = append(errs, errors.New("archive: night: not set"))
	}
	if !j.Program.Valid() {
		errs = append(errs, fmt.Errorf("archive: program: %d is neither 1 (public) nor 2 (partnership)", j.Program))
	}
	if j.OutDir == "" {
		errs = append(errs, errors.New("archive: out: no folder given"))
	}
	if j.Level == 0 {
		j.Level = DefaultLevel
	}
	if j.Level < 1 || j.Level > 9 {
		errs = append(errs, fmt.Errorf("archive: level: %d not in 1-9", j.Level))
	}
	if j.CheckpointBytes == 0 {
		j.CheckpointBytes = DefaultCheckpointBytes
	}
	if j.CheckpointBytes < 0 {
		errs = append(errs, errors.New("archive: checkpoint bytes: negative"))
	}
	if j.Workers <= 0 {
		j.Workers = runtime.GOMAXPROCS(0)
	}
	if j.Topic == "" && !j.Night.IsZero() {
		j.Topic = Topic(j.Night, j.Program)
	}
	if j.Logger == nil {
		j.Logger = zap.NewNop()
	}
	return errors.Join(errs...)
}

// run is the state of one Build call.
type run struct {
	job     Job
	paths   runPaths
	log     *zap.Logger
	opts    []kgo.Opt
	ck      checkpoint
	resumed bool

	part    *os.File
	sums    *os.File
	pending bytes.Buffer // MD5SUMS lines since the last checkpoint
	gz      *gzipWriter
	tw      *tar.Writer
	used    map[string]struct{}
	cr      *candidReader
	nextAt  int64 // input size that triggers the next checkpoint
	nckpt   int
	size    int64
	input   int64
	prog    *progress
	done    bool
}

// open resumes from a checkpoint or starts over.
func (r *run) open(ctx context.Context, admin *kadm.Client) error {
	r.cr = newCandidReader()
	r.cr.schemas = r.job.Schemas
	r.used = map[string]struct{}{}
	var ck checkpoint
	err := readJSON(r.paths.ckpt, &ck)
	if err == nil {
		err = r.resume(ck)
		if err != nil {
			r.log.Warn("archive checkpoint unusable, starting over", zap.String("file", r.paths.ckpt), zap.Error(err))
			r.closeFiles()
		}
	}
	if err != nil {
		if err := r.fresh(ctx, admin); err != nil {
			return err
		}
	}
	r.nextAt = (r.gz.size/r.job.CheckpointBytes + 1) * r.job.CheckpointBytes
	if r.job.Progress != nil {
		var total, done int64
		for i, pr := range r.ck.Ranges {
			total += pr.End - pr.Start
			done += r.ck.Next[i] - pr.Start
		}
		r.prog = newProgress(r.job.Progress, FileName(r.job.Night, r.job.Program), total, done)
	}
	return nil
}

func (r *run) resume(ck checkpoint) error {
	if ck.Version != checkpointVersion || ck.Topic != r.job.Topic || len(ck.Next) != len(ck.Ranges) || ck.Checkpoint <= 0 {
		return errors.New("checkpoint is for another run")
	}
	part, err := os.OpenFile(r.paths.part, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	r.part = part
	sums, err := os.OpenFile(r.paths.sums, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	r.sums = sums
	for _, f := range []struct {
		f    *os.File
		size int64
	}{{part, ck.PartSize}, {sums, ck.SumsSize}} {
		st, err := f.f.Stat()
		if err != nil {
			return err
		}
		if st.Size() < f.size {
			return fmt.Errorf("%s is shorter than its checkpoint", f.f.Name())
		}
		if err := f.f.Truncate(f.size); err != nil {
			return err
		}
		if _, err := f.f.Seek(f.size, io.SeekStart); err != nil {
			return err
		}
	}
	lines, err := io.ReadAll(io.NewSectionReader(sums, 0, ck.SumsSize))
	if err != nil {
		return err
	}
	for line := range strings.SplitSeq(string(lines), "\n") {
		if _, name, ok := strings.Cut(line, "  "); ok {
			r.used[name] = struct{}{}
		}
	}
	// A different checkpoint size only moves later block boundaries.
	r.job.Level = ck.Level
	gz, err := newGzipWriter(part, ck.Level, r.job.Workers, &ck.Gzip, ck.PartSize)
	if err != nil {
		return err
	}
	r.gz, r.tw, r.ck, r.resumed = gz, tar.NewWriter(gz), ck, true
	r.ck.Checkpoint = r.job.CheckpointBytes
	r.log.Info("archive resumed", zap.String("topic", ck.Topic), zap.Int64("members", ck.Members), zap.Int64("input_bytes", ck.Gzip.Size))
	return nil
}

func (r *run) fresh(ctx context.Context, admin *kadm.Client) error {
	ranges, err := listRanges(ctx, admin, r.job.Topic)
	if err != nil {
		return err
	}
	if err := removeIfExists(r.paths.ckpt); err != nil {
		return err
	}
	return r.start(ranges)
}

// start begins a new archive of ranges.
func (r *run) start(ranges []PartitionRange) (err error) {
	r.used = map[string]struct{}{}
	r.ck = checkpoint{Version: checkpointVersion, Topic: r.job.Topic, Level: r.job.Level, Ranges: ranges, Checkpoint: r.job.CheckpointBytes}
	for _, pr := range ranges {
		r.ck.Next = append(r.ck.Next, pr.Start)
	}
	if r.part, err = os.Create(r.paths.part); err != nil {
		return err
	}
	if r.sums, err = os.Create(r.paths.sums); err != nil {
		return err
	}
	if r.gz, err = newGzipWriter(r.part, r.job.Level, r.job.Workers, nil, 0); err != nil {
		return err
	}
	r.tw = tar.NewWriter(r.gz)
	return nil
}

// listRanges is [log start offset, high watermark) of every partition.
func listRanges(ctx context.Context, admin *kadm.Client, topic string) ([]PartitionRange, error) {
	starts, err := admin.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) || (err == nil && len(starts[topic]) == 0) {
		return nil, fmt.Errorf("%w: %s", ErrNoTopic, topic)
	}
	if err != nil {
		return nil, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	ends, err := admin.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	var out []PartitionRange
	for p, s := range starts[topic] {
		e, ok := ends.Lookup(topic, p)
		if !ok {
			return nil, fmt.Errorf("list end offsets of %s: partition %d missing", topic, p)
		}
		out = append(out, PartitionRange{Partition: p, Start: s.Offset, End: max(e.Offset, s.Offset)})
	}
	slices.SortFunc(out, func(a, b PartitionRange) int { return int(a.Partition - b.Partition) })
	return out, nil
}

// consume reads each partition in turn, in offset order, so that the same
// topic always gives the same archive.
func (r *run) consume(ctx context.Context) error {
	for i, pr := range r.ck.Ranges {
		if r.ck.Next[i] >= pr.End {
			continue
		}
		if err := r.consumePartition(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

func (r *run) consumePartition(ctx context.Context, i int) error {
	pr := r.ck.Ranges[i]
	opts := append(slices.Clone(r.opts),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.job.Topic: {pr.Partition: kgo.NewOffset().At(r.ck.Next[i])}}),
		kgo.FetchMaxBytes(64<<20),
		kgo.FetchMaxPartitionBytes(32<<20),
		// Retention deleting messages under a run is an error, not a
		// silent jump to the new log start.
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for r.ck.Next[i] < pr.End {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, fe := range fs.Errors() {
			return fmt.Errorf("fetch %s[%d] at %d: %w", fe.Topic, fe.Partition, r.ck.Next[i], fe.Err)
		}
		var ferr error
		fs.EachRecord(func(rec *kgo.Record) {
			if ferr != nil || rec.Partition != pr.Partition || rec.Offset < r.ck.Next[i] || rec.Offset >= pr.End {
				return
			}
			// A fetch can hold a whole partition: stop within it when asked.
			if ferr = ctx.Err(); ferr != nil {
				return
			}
			if ferr = r.add(rec); ferr != nil {
				return
			}
			r.ck.Next[i] = rec.Offset + 1
			if r.gz.size >= r.nextAt {
				ferr = r.checkpoint()
			}
		})
		if ferr != nil {
			return ferr
		}
	}
	return nil
}

// add writes one message as a member.
func (r *run) add(rec *kgo.Record) error {
	name := ""
	data, c, err := r.cr.Member(rec.Value)
	switch {
	case err == nil:
		name = r.uniqueName(MemberBase(c))
	case errors.Is(err, ErrNoCandid):
		name = r.uniqueName(fmt.Sprintf("nocandid_%d_%d", rec.Partition, rec.Offset))
		r.ck.NoCandid++
		r.log.Warn("archive member without candid", zap.String("topic", rec.Topic), zap.Int32("partition", rec.Partition), zap.Int64("offset", rec.Offset), zap.Error(err))
	default:
		return fmt.Errorf("%s[%d] at %d: %w", rec.Topic, rec.Partition, rec.Offset, err)
	}
	mtime := rec.Timestamp.Unix()
	if mtime < 0 {
		mtime = 0
	}
	r.ck.MaxTime = max(r.ck.MaxTime, mtime)
	if err := r.writeMember(name, data, mtime); err != nil {
		return err
	}
	sum := md5.Sum(data)
	r.pending.WriteString(hex.EncodeToString(sum[:]))
	r.pending.WriteString("  ")
	r.pending.WriteString(name)
	r.pending.WriteByte('\n')
	r.ck.Members++
	if r.prog != nil {
		r.prog.add(1, int64(len(rec.Value)))
	}
	return nil
}

func (r *run) uniqueName(base string) string {
	name := base + ".avro"
	for n := 2; ; n++ {
		if _, dup := r.used[name]; !dup {
			break
		}
		name = base + "_" + strconv.Itoa(n) + ".avro"
	}
	r.used[name] = struct{}{}
	return name
}

func (r *run) writeMember(name string, data []byte, mtime int64) error {
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     int64(len(data)),
		Mode:     0o644,
		ModTime:  time.Unix(mtime, 0),
		Format:   tar.FormatUSTAR,
	}
	if err := r.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("tar %s: %w", name, err)
	}
	_, err := r.tw.Write(data)
	return err
}

// checkpoint makes everything so far durable and records where to go on.
func (r *run) checkpoint() error {
	if err := r.tw.Flush(); err != nil {
		return err
	}
	st, written, err := r.gz.Sync()
	if err != nil {
		return fmt.Errorf("compress: %w", err)
	}
	if err := r.part.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", r.paths.part, err)
	}
	if _, err := r.sums.Write(r.pending.Bytes()); err != nil {
		return err
	}
	if err := r.sums.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", r.paths.sums, err)
	}
	r.ck.SumsSize += int64(r.pending.Len())
	r.pending.Reset()
	r.ck.PartSize, r.ck.Gzip = written, st
	b, err := json.Marshal(r.ck)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(durable.OS{}, r.paths.ckpt, b, 0o644); err != nil {
		return err
	}
	r.nextAt = (st.Size/r.job.CheckpointBytes + 1) * r.job.CheckpointBytes
	r.nckpt++
	if r.job.afterCheckpoint != nil {
		r.job.afterCheckpoint(r.nckpt)
	}
	return nil
}

// finish appends MD5SUMS, ends the tar and gzip member, and publishes the
// archive under its final name.
func (r *run) finish() error {
	if _, err := r.sums.Write(r.pending.Bytes()); err != nil {
		return err
	}
	r.pending.Reset()
	st, err := r.sums.Stat()
	if err != nil {
		return err
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: "MD5SUMS", Size: st.Size(), Mode: 0o644,
		ModTime: time.Unix(r.ck.MaxTime, 0), Format: tar.FormatUSTAR}
	if err := r.tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := io.Copy(r.tw, bufio.NewReader(io.NewSectionReader(r.sums, 0, st.Size()))); err != nil {
		return fmt.Errorf("MD5SUMS: %w", err)
	}
	if err := r.tw.Close(); err != nil {
		return err
	}
	size, err := r.gz.Close()
	if err != nil {
		return fmt.Errorf("compress: %w", err)
	}
	r.size, r.input = size, r.gz.size
	if err := r.part.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", r.paths.part, err)
	}
	r.closeFiles()
	man := Manifest{Topic: r.ck.Topic, Ranges: r.ck.Ranges, Members: r.ck.Members, NoCandid: r.ck.NoCandid, Size: size}
	b, _ := json.Marshal(man)
	if err := durable.WriteFile(durable.OS{}, r.paths.meta, b, 0o644); err != nil {
		return err
	}
	if err := os.Rename(r.paths.part, r.paths.final); err != nil {
		return err
	}
	if err := durable.SyncDir(r.paths.dir); err != nil {
		return fmt.Errorf("fsync %s: %w", r.paths.dir, err)
	}
	r.done = true
	if r.prog != nil {
		r.prog.finish()
	}
	r.log.Info("archive written", zap.String("file", r.paths.final), zap.Int64("members", r.ck.Members), zap.Int64("bytes", size))
	return removeIfExists(r.paths.ckpt, r.paths.sums)
}

func (r *run) closeFiles() {
	if r.gz != nil {
		r.gz.Abort()
	}
	for _, f := range []*os.File{r.part, r.sums} {
		if f != nil {
			_ = f.Close()
		}
	}
	r.part, r.sums, r.gz = nil, nil, nil
}

// abort leaves the files of an unfinished run for the next one to resume.
func (r *run) abort() {
	if !r.done {
		r.closeFiles()
		if r.prog != nil {
			r.prog.stop()
		}
	}
}
