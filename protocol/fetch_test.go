package protocol

import (
	"bytes"
	"context"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// makeBatch encodes a v2 record batch of n records of size bytes each.
func makeBatch(n, size int, ts int64) []byte {
	var recs []byte
	for i := range n {
		r := kmsg.NewRecord()
		r.OffsetDelta = int32(i)
		r.Value = bytes.Repeat([]byte{byte('a' + i%26)}, size)
		enc := r.AppendTo(nil)
		r.Length = int32(len(enc) - 1)
		recs = r.AppendTo(recs)
	}
	b := kmsg.NewRecordBatch()
	b.Magic, b.LastOffsetDelta, b.NumRecords = 2, int32(n-1), int32(n)
	b.FirstTimestamp, b.MaxTimestamp = ts, ts
	b.ProducerID, b.ProducerEpoch, b.FirstSequence = -1, -1, -1
	b.Records = recs
	enc := b.AppendTo(nil)
	b.Length = int32(len(enc) - 12)
	enc = b.AppendTo(nil)
	b.CRC = int32(crc32.Checksum(enc[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b.AppendTo(nil)
}

func produceReq(version, acks int16, topic string, partition int32, batches []byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = version, acks, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition, rp.Records = partition, batches
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

func TestProduceErrors(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	ts.b.CreateTopic(context.Background(), "p", 1, nil, false)
	ts.b.maxBatch = 5000
	good := makeBatch(2, 10, 1)
	magic1 := append([]byte(nil), good...)
	magic1[batchMagicAt] = 1
	short := good[:40]
	for _, tc := range []struct {
		name  string
		topic string
		acks  int16
		recs  []byte
		want  *kerr.Error
	}{
		{"ok", "p", 1, good, nil},
		{"two batches", "p", -1, append(append([]byte(nil), good...), good...), nil},
		{"magic 1", "p", 1, magic1, kerr.UnsupportedForMessageFormat},
		{"magic 0 short", "p", 1, append(make([]byte, 16), 0, 0, 0, 0), kerr.UnsupportedForMessageFormat},
		{"truncated", "p", 1, short, kerr.CorruptMessage},
		{"empty", "p", 1, nil, kerr.CorruptMessage},
		{"too large", "p", 1, makeBatch(1, 6000, 1), kerr.MessageTooLarge},
		{"unknown topic", "nope", 1, good, kerr.UnknownTopicOrPartition},
		{"bad acks", "p", 2, good, kerr.InvalidRequiredAcks},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, v := range []int16{3, 9, 10} {
				resp := rawRoundTrip(t, ts.addr, produceReq(v, tc.acks, tc.topic, 0, tc.recs)).(*kmsg.ProduceResponse)
				p := resp.Topics[0].Partitions[0]
				if err := kerr.ErrorForCode(p.ErrorCode); err != tc.want && !(tc.want == nil && err == nil) {
					t.Errorf("v%d: error %v, want %v", v, err, tc.want)
				}
				if tc.want == nil && p.BaseOffset < 0 {
					t.Errorf("v%d: base offset %d", v, p.BaseOffset)
				}
			}
		})
	}
}

func fetchReq(version int16, maxBytes, partMax int32, parts ...fetchTarget) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.Version, req.MaxBytes, req.MinBytes, req.MaxWaitMillis = version, maxBytes, 1, 0
	req.ReplicaID = -1
	for _, p := range parts {
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = p.topic, p.id
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p.partition, p.offset, partMax
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
	}
	return req
}

type fetchTarget struct {
	topic     string
	id        [16]byte
	partition int32
	offset    int64
}

// batchBases lists the base offsets of the batches in a fetch answer.
func batchBases(t *testing.T, b []byte) []int64 {
	var out []int64
	for len(b) > 0 {
		var rb kmsg.RecordBatch
		if err := rb.ReadFrom(b); err != nil {
			t.Fatalf("fetched bytes do not parse: %v", err)
		}
		out = append(out, rb.FirstOffset)
		b = b[12+rb.Length:]
	}
	return out
}

func TestFetchLimits(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	ts.b.CreateTopic(context.Background(), "f", 2, nil, false)
	batch := makeBatch(3, 300, 1) // offsets 0-2, 3-5, ...
	for range 5 {
		for p := int32(0); p < 2; p++ {
			if _, _, err := ts.b.Produce(t.Context(), "f", p, batch); err != nil {
				t.Fatal(err)
			}
		}
	}
	id, _, _ := ts.b.Topic(context.Background(), "f", false)
	S := int32(len(batch))
	for _, v := range []int16{4, 11, 12, 13, 15} {
		f := func(maxBytes, partMax int32, targets ...fetchTarget) *kmsg.FetchResponse {
			for i := range targets {
				targets[i].id = id
			}
			return rawRoundTrip(t, ts.addr, fetchReq(v, maxBytes, partMax, targets...)).(*kmsg.FetchResponse)
		}
		// Inside a batch: the whole batch containing offset 4.
		r := f(1<<20, 1, fetchTarget{topic: "f", offset: 4})
		p := r.Topics[0].Partitions[0]
		if got := batchBases(t, p.RecordBatches); len(got) != 1 || got[0] != 3 || p.HighWatermark != 15 {
			t.Errorf("v%d from 4 with partition max 1: bases %v hw %d", v, got, p.HighWatermark)
		}
		r = f(1<<20, S*5/2, fetchTarget{topic: "f", offset: 0})
		if got := batchBases(t, r.Topics[0].Partitions[0].RecordBatches); len(got) != 2 {
			t.Errorf("v%d partition max 2.5 batches: bases %v", v, got)
		}
		// Request budget of 1 byte: one batch from the first partition,
		// none from the second, which still reports its offsets.
		r = f(1, 1<<20, fetchTarget{topic: "f", partition: 0}, fetchTarget{topic: "f", partition: 1})
		p0, p1 := r.Topics[0].Partitions[0], r.Topics[1].Partitions[0]
		if len(batchBases(t, p0.RecordBatches)) != 1 || len(p1.RecordBatches) != 0 || p1.HighWatermark != 15 {
			t.Errorf("v%d request max 1: p0 %d bytes, p1 %d bytes hw %d", v, len(p0.RecordBatches), len(p1.RecordBatches), p1.HighWatermark)
		}
		r = f(1<<20, 1<<20, fetchTarget{topic: "f", offset: 99})
		if p := r.Topics[0].Partitions[0]; p.ErrorCode != kerr.OffsetOutOfRange.Code || p.HighWatermark != 15 {
			t.Errorf("v%d out of range: %+v", v, p)
		}
		if v >= 13 {
			req := fetchReq(v, 1<<20, 1<<20, fetchTarget{topic: "f", id: [16]byte{1}})
			r = rawRoundTrip(t, ts.addr, req).(*kmsg.FetchResponse)
			if p := r.Topics[0].Partitions[0]; p.ErrorCode != kerr.UnknownTopicID.Code {
				t.Errorf("v%d unknown id: %+v", v, p)
			}
		}
	}
	// MinBytes not reached: the answer comes at MaxWait with what there is.
	req := fetchReq(15, 1<<20, 1<<20, fetchTarget{topic: "f", id: id, offset: 12})
	req.MinBytes, req.MaxWaitMillis = 1<<20, 300
	start := time.Now()
	r := rawRoundTrip(t, ts.addr, req).(*kmsg.FetchResponse)
	if d := time.Since(start); d < 250*time.Millisecond || d > 10*time.Second || len(r.Topics[0].Partitions[0].RecordBatches) == 0 {
		t.Errorf("min bytes wait: %v, %d bytes", d, len(r.Topics[0].Partitions[0].RecordBatches))
	}
	// A fetch session is refused; SessionID stays 0.
	req = fetchReq(12, 1<<20, 1<<20, fetchTarget{topic: "f"})
	req.SessionID, req.SessionEpoch = 5, 1
	if r := rawRoundTrip(t, ts.addr, req).(*kmsg.FetchResponse); r.ErrorCode != kerr.FetchSessionIDNotFound.Code || r.SessionID != 0 {
		t.Errorf("session: %+v", r)
	}
}

// TestFetchEncoding checks the writev encoding against kmsg's for every
// version served, with the records in memory and with part of them in a
// file (sent with sendfile).
func TestFetchEncoding(t *testing.T) {
	recs := makeBatch(2, 50, 7)
	split := len(recs) / 3
	file, err := os.Create(filepath.Join(t.TempDir(), "segment"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if _, err := file.Write(append(make([]byte, 100), recs[:split]...)); err != nil {
		t.Fatal(err)
	}
	for v := int16(4); v <= 15; v++ {
		mk := func(empty []byte, tail []byte) *kmsg.FetchResponse {
			r := kmsg.NewPtrFetchResponse()
			r.Version, r.ThrottleMillis, r.ErrorCode = v, 3, 0
			for ti, name := range []string{"a", "bb"} {
				tt := kmsg.NewFetchResponseTopic()
				tt.Topic, tt.TopicID = name, [16]byte{byte(ti + 1)}
				for pi := range 3 {
					p := kmsg.NewFetchResponseTopicPartition()
					p.Partition, p.HighWatermark, p.LastStableOffset, p.LogStartOffset = int32(pi), 10, 10, 1
					p.RecordBatches = empty
					if pi != 1 {
						p.RecordBatches = tail
					}
					if ti == 1 {
						p.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{}
						p.ErrorCode = 1
					}
					tt.Partitions = append(tt.Partitions, p)
				}
				r.Topics = append(r.Topics, tt)
			}
			return r
		}
		want := mk([]byte{}, recs).AppendTo(nil)
		for _, inFiles := range []bool{false, true} {
			fr := &fetchResponse{FetchResponse: mk(nil, recs)}
			if inFiles {
				fr = &fetchResponse{FetchResponse: mk(nil, recs[split:])}
				for ti := range fr.Topics {
					for pi := range fr.Topics[ti].Partitions {
						p := fetchPartition{out: &fr.Topics[ti].Partitions[pi]}
						if pi != 1 {
							p.files = []*io.SectionReader{io.NewSectionReader(file, 100, int64(split))}
							p.fileBytes = int64(split)
						}
						fr.parts = append(fr.parts, p)
					}
				}
			}
			chunks, n, _ := fr.appendChunks(nil)
			var got bytes.Buffer
			if err := writeChunks(&got, chunks); err != nil {
				t.Fatal(err)
			}
			if n != got.Len() || !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("v%d, files %v: encoding differs from kmsg (%d vs %d bytes)", v, inFiles, got.Len(), len(want))
			}
		}
	}
}

// TestProduceAcksZeroError: with no response to carry the error, a failed
// acks=0 produce closes the connection.
func TestProduceAcksZeroError(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	c := dial(t, ts.addr)
	c.Write(frame(produceReq(9, 0, "missing", 0, makeBatch(1, 10, 1)), 1))
	expectClosed(t, c)
}

// TestLongPollManyPartitions parks a fetch on three partitions; an append to
// the last one wakes it.
func TestLongPollManyPartitions(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	ts.b.CreateTopic(context.Background(), "lp", 3, nil, false)
	req := fetchReq(12, 1<<20, 1<<20, fetchTarget{topic: "lp"}, fetchTarget{topic: "lp", partition: 1},
		fetchTarget{topic: "lp", partition: 2})
	req.MaxWaitMillis = 20000
	go func() {
		time.Sleep(300 * time.Millisecond)
		ts.b.Produce(t.Context(), "lp", 2, makeBatch(1, 10, 1))
	}()
	start := time.Now()
	r := rawRoundTrip(t, ts.addr, req).(*kmsg.FetchResponse)
	if d := time.Since(start); d > 5*time.Second || d < 250*time.Millisecond {
		t.Fatalf("answered after %v", d)
	}
	if got := batchBases(t, r.Topics[2].Partitions[0].RecordBatches); len(got) != 1 {
		t.Fatalf("partition 2 batches %v", got)
	}
}
