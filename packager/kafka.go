package packager

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Compression codecs of the produced record batches, named as Kafka's
// producer names them (compression.type).
const (
	CompressionZstd   = "zstd"
	CompressionLz4    = "lz4"
	CompressionSnappy = "snappy"
	CompressionGzip   = "gzip"
	CompressionNone   = "none"
)

const (
	// batchMaxBytes bounds a record batch before compression: Kafka's
	// max.message.bytes default, so a batch fits any cluster's default. It
	// holds about 16 OCF alerts of ~60 kB, enough for the schema text of all
	// but the first to compress to almost nothing.
	batchMaxBytes = 1_000_012
	// zstdWindow covers a whole batch, so each alert's schema text is found
	// in the one before it. franz-go's own zstd encoder uses a 64 KiB window,
	// about one alert: on simulated alerts it leaves 54% of the bytes where
	// this window leaves 47% (BenchmarkCompressBatches). The broker bounds a
	// window at 8 MiB; librdkafka and the Java client read any.
	zstdWindow = 1 << 20
	// produceLinger lets a partition's batch fill while the workers encode:
	// an exposure comes in a burst, and the packager flushes after its last
	// alert, so the linger never delays an exposure's acknowledgement.
	produceLinger = 20 * time.Millisecond
)

// KafkaOptions configures the default producer.
type KafkaOptions struct {
	// Bootstrap brokers, host:port.
	Bootstrap []string
	// NoIdempotence turns off the idempotent producer, for brokers that do
	// not serve InitProducerId. acks=all either way.
	NoIdempotence bool
	// ClientID names the client to the brokers ("ztfbroker-packager").
	ClientID string
	// Compression of the record batches: zstd (""), lz4, snappy, gzip or
	// none; Config.Compression.
	Compression string
	// CompressionLevel: 0 is the codec's default here (zstd 1, gzip 6); zstd
	// takes 1-22, gzip 1-9; Config.CompressionLevel.
	CompressionLevel int
	// Clients share the alerts, each compressing its batches on its own
	// goroutine; 0 is 2.
	Clients int
}

// NewKafkaProducer returns the packager's producer: franz-go clients with
// acks=all, idempotent unless NoIdempotence, batch compression as o says
// (zstd by default), topics auto-created, batches up to Kafka's default
// max.message.bytes. A third of every OCF alert is the same schema text,
// which batch compression removes on the wire and on disk without
// changing a message: consumers decompress transparently.
//
// A franz-go client compresses the batches of one request, and the
// requests to one broker, on one goroutine: zstd of an exposure then runs
// on one core while the other waits (a 10,000-alert exposure takes 0.9 s
// of zstd). So the alerts are shared among o.Clients clients (2 by
// default, one per core of the machine the issue names) by key: an
// objectId always goes through the same client, so its alerts keep their
// order, and each client's partitioner puts it in the same partition as
// one client would.
func NewKafkaProducer(o KafkaOptions, extra ...kgo.Opt) (*KafkaProducer, error) {
	id := o.ClientID
	if id == "" {
		id = "ztfbroker-packager"
	}
	compress, err := newCompressor(o.Compression, o.CompressionLevel)
	if err != nil {
		return nil, err
	}
	n := o.Clients
	if n <= 0 {
		n = defaultClients
	}
	k := &KafkaProducer{}
	for range n {
		opts := []kgo.Opt{
			kgo.SeedBrokers(o.Bootstrap...),
			kgo.ClientID(id),
			kgo.RequiredAcks(kgo.AllISRAcks()),
			kgo.AllowAutoTopicCreation(),
			compress,
			kgo.ProducerBatchMaxBytes(batchMaxBytes),
			kgo.MaxBufferedBytes(1 << 30 / n),
			kgo.MaxBufferedRecords(100_000 / n),
			kgo.ProducerLinger(produceLinger),
		}
		if o.NoIdempotence {
			opts = append(opts, kgo.DisableIdempotentWrite())
		}
		cl, err := kgo.NewClient(append(opts, extra...)...)
		if err != nil {
			k.Close()
			return nil, err
		}
		k.clients = append(k.clients, cl)
	}
	return k, nil
}

// defaultClients is how many clients share an exposure's alerts.
const defaultClients = 2

// KafkaProducer is the packager's producer (NewKafkaProducer).
type KafkaProducer struct{ clients []*kgo.Client }

// Produce hands r to the client its key goes through (FNV-1a of the key;
// a record without a key to the first).
func (k *KafkaProducer) Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	h := uint32(2166136261)
	for _, c := range r.Key {
		h = (h ^ uint32(c)) * 16777619
	}
	k.clients[h%uint32(len(k.clients))].Produce(ctx, r, promise)
}

// Flush sends what every client buffers and waits for it.
func (k *KafkaProducer) Flush(ctx context.Context) error {
	errs := make([]error, len(k.clients))
	var wg sync.WaitGroup
	for i, cl := range k.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = cl.Flush(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Client is the first of the clients, for admin requests (kadm) to the
// same brokers.
func (k *KafkaProducer) Client() *kgo.Client { return k.clients[0] }

// Close closes the clients.
func (k *KafkaProducer) Close() {
	for _, cl := range k.clients {
		cl.Close()
	}
}

// newCompressor is the producer option compressing batches with codec at
// level (see KafkaOptions).
func newCompressor(codec string, level int) (kgo.Opt, error) {
	c, err := batchCompressor(codec, level)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return kgo.ProducerBatchCompression(kgo.NoCompression()), nil
	}
	return kgo.WithCompressor(c), nil
}

// batchCompressor compresses record batches with codec at level; nil for
// none.
func batchCompressor(codec string, level int) (kgo.Compressor, error) {
	if err := checkCompression(codec, level); err != nil {
		return nil, err
	}
	var kc kgo.CompressionCodec
	switch codec {
	case "", CompressionZstd:
		if level == 0 {
			// 46.6% at ~1 GB/s a core; level 3 makes 42% at a fifth
			// of that, CPU that 2 cores producing an exposure do not
			// have to spare (BenchmarkZstdOptions).
			level = 1
		}
		enc, err := zstd.NewWriter(nil, zstdOptions(level)...)
		if err != nil {
			return nil, fmt.Errorf("packager: zstd encoder: %w", err)
		}
		return zstdCompressor{enc}, nil
	case CompressionLz4:
		kc = kgo.Lz4Compression()
	case CompressionSnappy:
		kc = kgo.SnappyCompression()
	case CompressionGzip:
		kc = kgo.GzipCompression().WithLevel(level)
	default: // none
		return nil, nil
	}
	return kgo.DefaultCompressor(kc)
}

// zstdOptions are the encoder's settings at a level (1-22). The frames carry
// no content checksum: the record batch's CRC32C already covers the bytes,
// and the xxhash64 of each batch cost the broker's check 1.5x its time
// (BenchmarkValidateAlerts in broker). At level 1 the literals are left raw,
// not Huffman coded: they are mostly the cutouts' deflate streams, which it
// barely shrinks, so encoding is 1.9x faster (decoding faster too) for 1
// point more of the alert's size (46.6% instead of 45.6%,
// BenchmarkZstdOptions). Level 2, the same encoder, codes them.
func zstdOptions(level int) []zstd.EOption {
	return []zstd.EOption{zstd.WithWindowSize(zstdWindow),
		zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
		zstd.WithEncoderConcurrency(2), zstd.WithZeroFrames(true),
		zstd.WithEncoderCRC(false), zstd.WithNoEntropyCompression(level <= 1)}
}

// checkCompression says what is wrong with a codec and level, naming the
// settings as Config does.
func checkCompression(codec string, level int) error {
	switch codec {
	case "", CompressionZstd:
		if level < 0 || level > 22 {
			return fmt.Errorf("packager.compression.level: %d is outside zstd's 1-22", level)
		}
	case CompressionGzip:
		if level < 0 || level > 9 {
			return fmt.Errorf("packager.compression.level: %d is outside gzip's 1-9", level)
		}
	case CompressionLz4, CompressionSnappy, CompressionNone:
		if level != 0 {
			return fmt.Errorf("packager.compression.level: %s takes no level (only zstd and gzip do)", codec)
		}
	default:
		return fmt.Errorf("packager.compression: %q is not one of zstd, lz4, snappy, gzip, none", codec)
	}
	return nil
}

// zstdCompressor compresses each batch as one zstd frame with a window that
// covers it. EncodeAll is safe for concurrent use.
type zstdCompressor struct{ enc *zstd.Encoder }

func (z zstdCompressor) Compress(dst *bytes.Buffer, src []byte, flags ...kgo.CompressFlag) ([]byte, kgo.CompressionCodecType) {
	for _, f := range flags {
		if f == kgo.CompressDisableZstd {
			return src, kgo.CodecNone // a broker before Kafka 2.1
		}
	}
	// As franz-go's own compressor does: encode into dst's array; the
	// buffer is reset before its next use.
	if n := z.enc.MaxEncodedSize(len(src)); n > dst.Cap() {
		dst.Grow(n)
	}
	return z.enc.EncodeAll(src, dst.Bytes()), kgo.CodecZstd
}
