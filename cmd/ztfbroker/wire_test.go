package main

import (
	"context"
	be "encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestHostileClientsDoNotStopService sends garbage, a frame announcing 2 GB
// and 500 idle connections, while a real client keeps producing and consuming.
func TestHostileClientsDoNotStopService(t *testing.T) {
	b := startBroker(t, "")

	// Garbage: random bytes that do not parse as a request.
	garbage, err := net.Dial("tcp", b.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	defer garbage.Close()
	garbage.Write([]byte{0, 0, 0, 20, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	expectClosed(t, garbage, "garbage request")

	// A frame that announces 2 GB: refused before anything is allocated.
	huge, err := net.Dial("tcp", b.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	defer huge.Close()
	var size [4]byte
	be.BigEndian.PutUint32(size[:], 2<<30-1)
	huge.Write(size[:])
	expectClosed(t, huge, "2 GB frame")

	// 500 idle connections stay open while others are served.
	var idle []net.Conn
	for i := 0; i < 500; i++ {
		c, err := net.Dial("tcp", b.Kafka)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		idle = append(idle, c)
	}
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()

	cl := newClient(t, b.Kafka, kgo.DefaultProduceTopic("still-serving"), kgo.DisableIdempotentWrite())
	for i := 0; i < 20; i++ {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("ok")}).FirstErr(); err != nil {
			t.Fatalf("produce beside hostile clients: %v", err)
		}
	}
	if n := len(consumeAll(t, b.Kafka, "still-serving")); n != 20 {
		t.Fatalf("consumed %d of 20 records beside hostile clients", n)
	}
}

func expectClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("%s: the broker kept the connection open", what)
	}
}
