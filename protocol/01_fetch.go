package protocol

import (
	"context"
	"io"
	"reflect"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// Fetch: v4-15.
//
// Records are whole batches starting with the one containing the fetch
// offset (the client skips records before its offset). On a plaintext
// connection to a Backend that keeps them in files (FileFetcher), the
// checked ones are sent from the files with sendfile (sendfile.go) and
// never copied here; otherwise, and for bytes not checked yet, they are
// the bytes the Backend appended to a pooled buffer, written to the socket
// as they are, with writev between the encoded fields
// (fetchResponse.appendChunks), so a fetched byte is copied once, from the
// log into the buffer.
//
// Limits: PartitionMaxBytes per partition and MaxBytes (capped by
// fetch.max.bytes) per request, soft for the first batch, which is always
// served whole. Long polling: with fewer than MinBytes available and no
// partition error, the request waits up to MaxWaitMillis (capped) for any of
// its partitions' Backend.Changed channels, then fetches again. The record
// bytes of every answer not yet written that are held in memory share
// max.inflight.response.bytes: a fetch gets what is free of its max bytes
// (fetchBudgeted, budget.go), and gives back what it answers from files.
//
// Fetch sessions (KIP-227) are not kept: SessionID is always 0, which makes
// clients send full fetches; a request naming a session gets
// FETCH_SESSION_ID_NOT_FOUND. Leader epoch is always 0: a newer
// CurrentLeaderEpoch is UNKNOWN_LEADER_EPOCH.
//
// Version notes: v4 LastStableOffset, AbortedTransactions, isolation level
// (no transactions, so LSO = high watermark); v5 LogStartOffset; v7
// sessions; v9 CurrentLeaderEpoch; v10 zstd; v11 rack (ignored),
// PreferredReadReplica (-1); v12 flexible; v13 topic ids instead of names;
// v15 ReplicaState instead of ReplicaID.
func init() {
	register(api{key: fetchKey, min: 4, max: 15, serve: serveFetch,
		acl: perResource("READ on each topic")})
}

// fetchResponse is a Fetch answer whose record batches are written with
// writev or sendfile instead of being copied into the encoded body.
type fetchResponse struct {
	*kmsg.FetchResponse
	bufs [][]byte // pooled buffers holding the record batches
	// parts are the answer's partitions in order; their files are sent
	// before their RecordBatches.
	parts []fetchPartition
	// fileBytes are the record bytes in files, releases let them go.
	fileBytes int64
	releases  []func()
	// held is what the records take of max.inflight.response.bytes.
	held   int64
	budget *byteBudget
}

func (f *fetchResponse) release() {
	for _, b := range f.bufs {
		putBuf(b)
	}
	f.bufs = nil
	for _, r := range f.releases {
		r()
	}
	f.releases, f.fileBytes = nil, 0
	for k := range f.parts {
		p := &f.parts[k]
		p.files, p.fileBytes, p.fileRecords = nil, 0, 0
	}
	if f.held > 0 {
		f.budget.give(f.held)
		f.held = 0
	}
}

// releaseResponse returns pooled memory held by a response once written.
func releaseResponse(r kmsg.Response) {
	if f, ok := r.(*fetchResponse); ok {
		f.release()
	}
}

// fetchPartition is one requested partition, resolved to a topic name.
type fetchPartition struct {
	topic string
	rp    *kmsg.FetchRequestTopicPartition
	out   *kmsg.FetchResponseTopicPartition
	code  int16 // fixed answer (unknown topic id, leader epoch)
	// files are the records sent from files, before out.RecordBatches.
	files       []*io.SectionReader
	fileBytes   int64
	fileRecords int64
}

// recordBytes are the bytes of the partition's records, files included.
func (p *fetchPartition) recordBytes() int { return int(p.fileBytes) + len(p.out.RecordBatches) }

func serveFetch(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.FetchRequest)
	resp := &fetchResponse{FetchResponse: req.ResponseKind().(*kmsg.FetchResponse), budget: s.responses}
	resp.SessionID = 0
	switch {
	case req.SessionID != 0:
		resp.ErrorCode = kerr.FetchSessionIDNotFound.Code
		return resp, nil
	case req.SessionEpoch > 0:
		resp.ErrorCode = kerr.InvalidFetchSessionEpoch.Code
		return resp, nil
	}

	ctx := c.requestContext()
	var parts []fetchPartition
	resp.Topics = make([]kmsg.FetchResponseTopic, len(req.Topics))
	for i := range req.Topics {
		rt := &req.Topics[i]
		t := &resp.Topics[i]
		*t = kmsg.NewFetchResponseTopic()
		t.Topic, t.TopicID = rt.Topic, rt.TopicID
		var code int16
		name := rt.Topic
		if req.Version >= 13 {
			var ok bool
			if name, _, ok = s.ids.name(ctx, rt.TopicID); !ok {
				code = kerr.UnknownTopicID.Code
			}
		}
		if code == 0 && !s.authorize(ctx, kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, name) {
			code = kerr.TopicAuthorizationFailed.Code
		}
		t.Partitions = make([]kmsg.FetchResponseTopicPartition, len(rt.Partitions))
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			p := &t.Partitions[j]
			*p = kmsg.NewFetchResponseTopicPartition()
			p.Partition = rp.Partition
			if req.IsolationLevel == 1 {
				p.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{}
			}
			pc := code
			if pc == 0 && rp.CurrentLeaderEpoch > 0 {
				pc = kerr.UnknownLeaderEpoch.Code
			}
			parts = append(parts, fetchPartition{topic: name, rp: rp, out: p, code: pc})
		}
	}
	resp.parts = parts

	maxBytes := s.cfg.FetchMaxBytes
	if req.MaxBytes > 0 && int(req.MaxBytes) < maxBytes {
		maxBytes = int(req.MaxBytes)
	}
	wait := min(time.Duration(req.MaxWaitMillis)*time.Millisecond, s.cfg.FetchMaxWait)
	deadline := time.Now().Add(wait)

	var changed []<-chan struct{}
	for {
		got, failed := s.fetchBudgeted(c, resp, parts, maxBytes, deadline)
		if failed || got >= int(req.MinBytes) || wait <= 0 || !time.Now().Before(deadline) {
			break
		}
		if changed == nil {
			// Subscribe, then fetch again: an append between the fetch
			// above and the subscription is not missed.
			changed = s.changedChans(ctx, parts)
			resp.release()
			continue
		}
		woke := s.waitChanged(c, changed, deadline)
		changed = nil
		resp.release()
		if !woke {
			// Deadline, shutdown or a dead connection: answer with
			// what there is now.
			s.fetchBudgeted(c, resp, parts, maxBytes, time.Now())
			break
		}
	}
	for k := range parts {
		if p := &parts[k]; p.recordBytes() > 0 {
			s.m.fetched(p.topic, p.recordBytes(), p.fileRecords+countRecords(p.out.RecordBatches))
		}
	}
	resp.ThrottleMillis = c.accountFetch(parts) // per-user counts and the consumer quota (quota.go)
	return resp, nil
}

// fetchBudgeted is fetchOnce within max.inflight.response.bytes: max bytes
// shrink to what is free, waiting until the deadline when nothing is (then
// only offsets are answered). The first batch, served whole, may need more
// than was free: the fetch then gives everything back, waits for the bytes
// that batch needs and fetches again, honouring the first-batch rule
// without going past the budget. Of the bytes taken, resp holds those its
// records take in memory until it is released (written, or dropped with
// its connection); those answered from files are given back at once. It
// returns the record bytes of the answer, files included.
func (s *Server) fetchBudgeted(c *conn, resp *fetchResponse, parts []fetchPartition, maxBytes int, deadline time.Time) (int, bool) {
	ctx := c.requestContext()
	// A connection with answers queued (its client is slow, or not
	// reading) leaves the reserve to those without.
	useReserve := c.queued.Load() == 0
	b := s.responses
	var n int64
	for {
		b.mu.Lock()
		wake := b.wake
		b.mu.Unlock()
		if n = b.takeUpTo(int64(maxBytes), useReserve); n > 0 {
			break
		}
		if !b.wait(wake, deadline, s.done, c.ctx.Done()) {
			total, _, failed := s.fetchOnce(ctx, c, resp, parts, 0)
			return total, failed
		}
	}
	total, got, failed := s.fetchOnce(ctx, c, resp, parts, int(n))
	if int64(got) <= n {
		b.give(n - int64(got))
		resp.held = int64(got)
		return total, failed
	}
	resp.held = n
	extra := int64(got) - n
	t := b.takeUpTo(extra, useReserve)
	if t == extra {
		resp.held += extra
		return total, failed
	}
	b.give(t)
	need := int64(got)
	resp.release()
	if !b.take(need, useReserve, time.Time{}, s.done, c.ctx.Done()) {
		total, _, failed = s.fetchOnce(ctx, c, resp, parts, 0)
		return total, failed
	}
	total, got, failed = s.fetchOnce(ctx, c, resp, parts, int(need))
	resp.held = need
	if extra = int64(got) - need; extra > 0 {
		// A different first batch (retention moved the log start):
		// rare, and one batch.
		b.mu.Lock()
		b.used += extra
		b.mu.Unlock()
		resp.held += extra
	} else if extra < 0 {
		b.give(-extra)
		resp.held = int64(got)
	}
	return total, failed
}

// fetchOnce fills every partition's answer from the Backend and returns the
// record bytes gathered, those of them in memory (not in files) and
// whether any partition failed.
func (s *Server) fetchOnce(ctx context.Context, c *conn, resp *fetchResponse, parts []fetchPartition, maxBytes int) (total, inMemory int, failed bool) {
	remaining := maxBytes
	ff, files := s.b.(FileFetcher)
	files = files && c.zeroCopy
	for k := range parts {
		p := &parts[k]
		out := p.out
		out.RecordBatches = nil
		p.files, p.fileBytes, p.fileRecords = nil, 0, 0
		out.ErrorCode = p.code
		out.HighWatermark, out.LastStableOffset, out.LogStartOffset = -1, -1, -1
		if p.code != 0 {
			failed = true
			continue
		}
		if remaining <= 0 {
			// Budget spent: report offsets only.
			lso, hw, err := s.b.Offsets(ctx, p.topic, p.rp.Partition)
			if err != nil {
				out.ErrorCode = s.errCode(err, kerr.KafkaStorageError, "fetch: offsets",
					zap.String("topic", p.topic), zap.Int32("partition", p.rp.Partition))
				failed = true
				continue
			}
			out.HighWatermark, out.LastStableOffset, out.LogStartOffset = hw, hw, lso
			continue
		}
		limit := remaining
		if pm := int(p.rp.PartitionMaxBytes); pm > 0 && pm < limit {
			limit = pm
		}
		// A pooled buffer of the usual partition limit (1 MiB for librdkafka
		// and franz-go); a bigger answer grows its own array, so an idle
		// partition of a large request does not hold a large buffer.
		buf := getBuf(min(limit, 1<<20))[:0]
		var recs []byte
		var hw, lso int64
		var err error
		if files {
			var release func()
			p.files, p.fileRecords, recs, release, hw, lso, err = ff.FetchFiles(ctx, p.topic, p.rp.Partition, p.rp.FetchOffset, limit, buf)
			resp.releases = append(resp.releases, release)
			for _, f := range p.files {
				p.fileBytes += f.Size()
			}
			resp.fileBytes += p.fileBytes
		} else {
			recs, hw, lso, err = s.b.Fetch(ctx, p.topic, p.rp.Partition, p.rp.FetchOffset, limit, buf)
		}
		if len(recs) == 0 || &recs[:1][0] != &buf[:1][0] {
			putBuf(buf) // empty, or the Backend grew a new array
		} else {
			resp.bufs = append(resp.bufs, buf)
		}
		if err != nil {
			out.ErrorCode = s.errCode(err, kerr.KafkaStorageError, "fetch",
				zap.String("topic", p.topic), zap.Int32("partition", p.rp.Partition), zap.Int64("offset", p.rp.FetchOffset))
			if lso, hw, oerr := s.b.Offsets(ctx, p.topic, p.rp.Partition); oerr == nil {
				out.HighWatermark, out.LastStableOffset, out.LogStartOffset = hw, hw, lso
			}
			failed = true
			continue
		}
		out.HighWatermark, out.LastStableOffset, out.LogStartOffset = hw, hw, lso
		if len(recs) > 0 {
			out.RecordBatches = recs
			inMemory += len(recs)
		}
		remaining -= p.recordBytes()
		total += p.recordBytes()
	}
	return total, inMemory, failed
}

// changedChans subscribes to every fetchable partition's next append.
func (s *Server) changedChans(ctx context.Context, parts []fetchPartition) []<-chan struct{} {
	chans := make([]<-chan struct{}, 0, len(parts))
	for _, p := range parts {
		if p.code != 0 {
			continue
		}
		if ch, err := s.b.Changed(ctx, p.topic, p.rp.Partition); err == nil && ch != nil {
			chans = append(chans, ch)
		}
	}
	return chans
}

// waitChanged waits for any channel to close, reporting false at the
// deadline, at shutdown or when the connection dies.
func (s *Server) waitChanged(c *conn, chans []<-chan struct{}, deadline time.Time) bool {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	if len(chans) == 1 {
		select {
		case <-chans[0]:
			return true
		case <-t.C:
		case <-s.done:
		case <-c.ctx.Done():
		}
		return false
	}
	cases := make([]reflect.SelectCase, 0, len(chans)+3)
	cases = append(cases,
		reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(t.C)},
		reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(s.done)},
		reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(c.ctx.Done())})
	for _, ch := range chans {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
	}
	i, _, _ := reflect.Select(cases)
	return i >= 3
}

// appendChunks encodes the response after the frame header in dst and
// returns the pieces to write: encoded fields alternating with record
// batches (file sections, then bytes), their total length, and dst for
// reuse.
func (f *fetchResponse) appendChunks(dst []byte) ([]chunk, int, []byte) {
	v := f.Version
	flex := v >= 12
	arrayLen := func(dst []byte, n int) []byte {
		if flex {
			return kbin.AppendCompactArrayLen(dst, n)
		}
		return kbin.AppendArrayLen(dst, n)
	}
	chunks := make([]chunk, 0, 2*len(f.parts)+1)
	cut := 0
	total := 0
	k := 0 // the partition's place in f.parts

	dst = kbin.AppendInt32(dst, f.ThrottleMillis)
	if v >= 7 {
		dst = kbin.AppendInt16(dst, f.ErrorCode)
		dst = kbin.AppendInt32(dst, f.SessionID)
	}
	dst = arrayLen(dst, len(f.Topics))
	for i := range f.Topics {
		t := &f.Topics[i]
		switch {
		case v >= 13:
			dst = kbin.AppendUuid(dst, t.TopicID)
		case flex:
			dst = kbin.AppendCompactString(dst, t.Topic)
		default:
			dst = kbin.AppendString(dst, t.Topic)
		}
		dst = arrayLen(dst, len(t.Partitions))
		for j := range t.Partitions {
			p := &t.Partitions[j]
			var files []*io.SectionReader
			var fileBytes int
			if k < len(f.parts) && f.parts[k].out == p {
				files, fileBytes = f.parts[k].files, int(f.parts[k].fileBytes)
			}
			k++
			dst = kbin.AppendInt32(dst, p.Partition)
			dst = kbin.AppendInt16(dst, p.ErrorCode)
			dst = kbin.AppendInt64(dst, p.HighWatermark)
			dst = kbin.AppendInt64(dst, p.LastStableOffset)
			if v >= 5 {
				dst = kbin.AppendInt64(dst, p.LogStartOffset)
			}
			// No transactions: aborted transactions are null, or empty
			// for read_committed as Kafka sends them.
			if flex {
				dst = kbin.AppendCompactNullableArrayLen(dst, 0, p.AbortedTransactions == nil)
			} else {
				dst = kbin.AppendNullableArrayLen(dst, 0, p.AbortedTransactions == nil)
			}
			if v >= 11 {
				dst = kbin.AppendInt32(dst, p.PreferredReadReplica)
			}
			// Records are never null on the wire: Kafka sends empty.
			n := fileBytes + len(p.RecordBatches)
			if flex {
				dst = kbin.AppendUvarint(dst, uint32(n+1))
			} else {
				dst = kbin.AppendInt32(dst, int32(n))
			}
			if n > 0 {
				chunks = append(chunks, chunk{b: dst[cut:]})
				total += len(dst) - cut
				for _, sr := range files {
					chunks = append(chunks, chunk{f: sr})
				}
				if len(p.RecordBatches) > 0 {
					chunks = append(chunks, chunk{b: p.RecordBatches})
				}
				total += n
				cut = len(dst)
			}
			if flex {
				dst = append(dst, 0) // partition tagged fields
			}
		}
		if flex {
			dst = append(dst, 0) // topic tagged fields
		}
	}
	if flex {
		dst = append(dst, 0) // response tagged fields
	}
	chunks = append(chunks, chunk{b: dst[cut:]})
	total += len(dst) - cut
	return chunks, total, dst
}
