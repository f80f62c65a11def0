package broker

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/twmb/franz-go/pkg/kerr"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/log"
)

// FetchFiles is Fetch whose verified batches stay in the segment files
// (log.ReadSpans): files are sections of open *os.File segments, to be sent
// before records, and fileRecords counts their records (offsets, for a
// compacted topic). The listener sends them with sendfile(2) and calls
// release once they are written or dropped; until then the files stay open
// and readable, whatever retention or compaction does. Bytes this process
// has not checked yet are read, checked and appended to dst, as by Fetch.
func (b *Broker) FetchFiles(ctx context.Context, topic string, partition int32, offset int64, maxBytes int, dst []byte) (files []*io.SectionReader, fileRecords int64, records []byte, release func(), highWatermark, logStartOffset int64, err error) {
	release = func() {}
	p, err := b.partition(topic, partition)
	if err != nil {
		return nil, 0, dst, release, -1, -1, err
	}
	ls, hw := p.log.LogStartOffset(), p.log.HighWatermark()
	if offset < ls || offset > hw {
		return nil, 0, dst, release, hw, ls, fmt.Errorf("offset %d outside [%d, %d]: %w", offset, ls, hw, kerr.OffsetOutOfRange)
	}
	if offset == hw {
		return nil, 0, dst, release, hw, ls, nil
	}
	got, err := p.log.ReadSpans(offset, maxBytes, dst)
	if err != nil {
		got.Release()
		if ls2 := p.log.LogStartOffset(); offset < ls2 || errors.Is(err, log.ErrOffsetOutOfRange) {
			// DeleteRecords or retention moved the start meanwhile.
			return nil, 0, dst, release, p.log.HighWatermark(), ls2, fmt.Errorf("offset %d below log start %d: %w", offset, ls2, kerr.OffsetOutOfRange)
		}
		return nil, 0, dst, release, hw, ls, b.storageError(p, "fetch", err, zap.Int64("fetch_offset", offset))
	}
	if len(got.Spans) > 0 {
		files = make([]*io.SectionReader, len(got.Spans))
		for i, s := range got.Spans {
			files[i] = io.NewSectionReader(s.File, s.Pos, s.Len)
			fileRecords += s.Offsets
		}
		release = got.Release
	}
	// The high watermark only grows: read after the data, it covers it.
	return files, fileRecords, got.Tail, release, p.log.HighWatermark(), p.log.LogStartOffset(), nil
}
