package alertcat

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
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
		return &dirSink{r: r, dir: ep.Path, format: format}, nil
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
// does (<candid>.avro), or by its Kafka position or sequence number.
type dirSink struct {
	r      *runner
	dir    string
	format string
	seq    int
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
	f, err := os.Create(filepath.Join(s.dir, name+"."+s.format))
	if err != nil {
		return fmt.Errorf("cat: %w", err)
	}
	sk := s.r.streamSink(f, f.Name(), s.format, false)
	if err := sk.Write(a); err != nil {
		sk.Close()
		return err
	}
	return sk.Close()
}

func (s *dirSink) Flush() error { return nil }
func (s *dirSink) Close() error { return nil }
