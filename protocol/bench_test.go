package protocol

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"testing"
)

// BenchmarkFetch measures the fetch path over a loopback socket: one
// request, a response of about 4 MiB of record batches, read and dropped.
func BenchmarkFetch(b *testing.B) {
	for _, size := range []int{16 << 10, 256 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("batch=%dKiB", size>>10), func(b *testing.B) {
			ts := startServer(b, Config{}, nil)
			ts.b.CreateTopic(context.Background(), "bench", 1, nil, false)
			batch := makeBatch(size/(60<<10)+1, min(size, 60<<10), 1)
			n := (4 << 20) / len(batch)
			for range n {
				ts.b.Produce(b.Context(), "bench", 0, batch)
			}
			c := dial(b, ts.addr)
			req := frame(fetchReq(12, 64<<20, 64<<20, fetchTarget{topic: "bench"}), 1)
			b.SetBytes(int64(n * len(batch)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				c.Write(req)
				var size [4]byte
				if _, err := io.ReadFull(c, size[:]); err != nil {
					b.Fatal(err)
				}
				if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(size[:]))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkProduce measures the produce path over a loopback socket with
// acks=1, one batch per request.
func BenchmarkProduce(b *testing.B) {
	for _, size := range []int{16 << 10, 256 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("batch=%dKiB", size>>10), func(b *testing.B) {
			ts := startServer(b, Config{}, nil)
			ts.b.CreateTopic(context.Background(), "bench", 1, nil, false)
			batch := makeBatch(size/(60<<10)+1, min(size, 60<<10), 1)
			req := frame(produceReq(9, 1, "bench", 0, batch), 1)
			c := dial(b, ts.addr)
			b.SetBytes(int64(len(batch)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i%256 == 0 { // keep the in-memory log small
					b.StopTimer()
					ts.b.mu.Lock()
					ts.b.topics["bench"].parts[0].batches = nil
					ts.b.mu.Unlock()
					b.StartTimer()
				}
				c.Write(req)
				readFrame(b, c)
			}
		})
	}
}
