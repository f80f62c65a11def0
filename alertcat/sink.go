package alertcat

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

func (r *runner) openSink(ctx context.Context, ep Endpoint) (sink, error) {
	if ep.Kafka {
		if r.cfg.To == "json" {
			return nil, fmt.Errorf("cat: %s: Kafka messages are written as Avro, not JSON", ep)
		}
		return r.openKafkaSink(ctx, ep)
	}
	if ep.Path == "-" {
		format := r.cfg.To
		if format == "" {
			format = "json"
		}
		return r.streamSink(nopCloser{r.cfg.Stdout}, "stdout", format, true), nil
	}
	if fi, err := os.Stat(ep.Path); strings.HasSuffix(ep.Path, "/") || (err == nil && fi.IsDir()) {
		format := r.cfg.To
		if format == "" {
			format = "avro"
		}
		if err := os.MkdirAll(ep.Path, 0o755); err != nil {
			return nil, fmt.Errorf("cat: %w", err)
		}
		return &dirSink{r: r, dir: ep.Path, format: format, byTopic: r.severalTopics(),
			next: map[string]int{}, madeDirs: map[string]bool{}}, nil
	}
	format := formatOf(ep.Path, r.cfg.To)
	if format == "" {
		return nil, fmt.Errorf("cat: %s: cannot tell avro from json by the name; use --to", ep.Path)
	}
	f, err := os.Create(ep.Path)
	if err != nil {
		return nil, fmt.Errorf("cat: %w", err)
	}
	return r.streamSink(f, ep.Path, format, false), nil
}

// severalTopics says whether the sources can name more than one topic: a
// topic pattern, or more than one kafka:// source.
func (r *runner) severalTopics() bool {
	n := 0
	for _, s := range r.cfg.Sources {
		ep, _ := ParseEndpoint(s)
		if ep.Pattern != nil {
			return true
		}
		if ep.Kafka {
			n++
		}
	}
	return n > 1
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func (r *runner) streamSink(w io.WriteCloser, name, format string, concat bool) sink {
	bw := bufio.NewWriterSize(w, 1<<20)
	if format == "json" {
		return &jsonSink{c: r.codec, w: bw, f: w}
	}
	return &avroSink{w: bw, f: w, name: name, concat: concat, framed: map[int32]*avrofile.Header{}}
}

// jsonSink writes one JSON object per line (JSON Lines).
type jsonSink struct {
	c   *Codec
	w   *bufio.Writer
	f   io.Closer
	buf []byte
}

func (s *jsonSink) Write(a *Alert) error {
	var err error
	if s.buf, err = s.c.AppendJSON(s.buf[:0], a); err != nil {
		return err
	}
	s.buf = append(s.buf, '\n')
	_, err = s.w.Write(s.buf)
	return err
}

func (s *jsonSink) Flush() error { return s.w.Flush() }

func (s *jsonSink) Close() error {
	err := s.w.Flush()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// avroSink writes one container file: the header of the first alert, then
// one block per alert. Alerts with the same schema text and codec but
// another sync marker join the file under its marker; another schema
// starts a new container (stdout only; a file must hold one schema).
type avroSink struct {
	w      *bufio.Writer
	f      io.Closer
	name   string
	concat bool
	header *avrofile.Header
	framed map[int32]*avrofile.Header
	buf    []byte
}

func (s *avroSink) headerOf(a *Alert) *avrofile.Header {
	if a.Header != nil {
		return a.Header
	}
	h, ok := s.framed[a.SchemaID]
	if !ok {
		h = avrofile.NewHeader([]byte(a.SchemaText))
		s.framed[a.SchemaID] = h
	}
	return h
}

func (s *avroSink) Write(a *Alert) error {
	h := s.headerOf(a)
	s.buf = s.buf[:0]
	if s.header == nil || !bytes.Equal(s.header.Schema(), h.Schema()) || s.header.Codec() != h.Codec() {
		if s.header != nil && !s.concat {
			return fmt.Errorf("cat: %s: alerts with different writer schemas cannot share one container file; give a directory (ending in /) for one file per alert", s.name)
		}
		s.header = h
		s.buf = avrofile.AppendHeader(s.buf, h)
	}
	var err error
	if s.buf, err = appendBlock(s.buf, s.header, a.Body); err != nil {
		return err
	}
	_, err = s.w.Write(s.buf)
	return err
}

func (s *avroSink) Flush() error { return s.w.Flush() }

func (s *avroSink) Close() error {
	err := s.w.Flush()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// dirSink writes one file per alert, named by candid as the ZTF archive
// does (<candid>.avro), or by its Kafka position or sequence number. It
// never overwrites a file, of this run or an earlier one: a name already
// taken gets the archive's suffix (see uniqueName). When the sources can
// name several topics (a topic pattern, or more than one kafka:// source)
// each alert read from Kafka goes into a subfolder named after its topic,
// so that two nights keep their own files.
type dirSink struct {
	r        *runner
	dir      string
	format   string
	byTopic  bool
	seq      int
	next     map[string]int
	madeDirs map[string]bool
}

// uniqueName is the nightly archive's rule for the n-th alert (from 1)
// with one base name, applied to files (archive/doc.go, "A candid already
// used in this archive gets _2, _3, ..."): <base>.<ext>, <base>_2.<ext>,
// <base>_3.<ext>, ... Keep the two in step.
func uniqueName(base string, n int, ext string) string {
	if n <= 1 {
		return base + "." + ext
	}
	return base + "_" + strconv.Itoa(n) + "." + ext
}

func (s *dirSink) Write(a *Alert) error {
	s.seq++
	name := "alert-" + strconv.Itoa(s.seq)
	switch {
	case a.HasCandid:
		name = strconv.FormatInt(a.Candid, 10)
	case a.Kafka != nil:
		name = fmt.Sprintf("%s-%d-%d", a.Kafka.Topic, a.Kafka.Partition, a.Kafka.Offset)
	}
	dir := s.dir
	if s.byTopic && a.Kafka != nil && a.Kafka.Topic != "" {
		// The name came from a broker or a JSON file: a folder only if it
		// is a name Kafka allows ("." and ".." are not).
		t := a.Kafka.Topic
		if !topicChars.MatchString(t) || t == "." || t == ".." {
			return fmt.Errorf("cat: alert from topic %q: not a Kafka topic name, not made a folder", t)
		}
		dir = filepath.Join(s.dir, t)
		if !s.madeDirs[dir] {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("cat: %w", err)
			}
			s.madeDirs[dir] = true
		}
	}
	f, err := s.create(dir, name)
	if err != nil {
		return err
	}
	sk := s.r.streamSink(f, f.Name(), s.format, false)
	if err := sk.Write(a); err != nil {
		sk.Close()
		return err
	}
	return sk.Close()
}

// create opens the first free name for base in dir, with O_EXCL so that
// no file is ever overwritten, not even one another process just made.
func (s *dirSink) create(dir, base string) (*os.File, error) {
	key := filepath.Join(dir, base)
	for n := max(s.next[key], 1); ; n++ {
		f, err := os.OpenFile(filepath.Join(dir, uniqueName(base, n, s.format)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("cat: %w", err)
		}
		s.next[key] = n + 1
		return f, nil
	}
}
func (s *dirSink) Flush() error { return nil }
func (s *dirSink) Close() error { return nil }
