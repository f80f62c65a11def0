package packager

import (
	"bytes"
	"fmt"
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
}

// NewKafkaProducer returns a franz-go client for the packager: acks=all,
// idempotent unless told otherwise, topics auto-created, record batches up to
// 1 MB compressed with zstd unless told otherwise. A third of each OCF alert
// is the same schema text, which batch compression removes on the wire and
// on disk without changing a message: consumers decompress transparently.
func NewKafkaProducer(o KafkaOptions, extra ...kgo.Opt) (*kgo.Client, error) {
	id := o.ClientID
	if id == "" {
		id = "ztfbroker-packager"
	}
	compress, err := newCompressor(o.Compression, o.CompressionLevel)
	if err != nil {
		return nil, err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(o.Bootstrap...),
		kgo.ClientID(id),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.AllowAutoTopicCreation(),
		compress,
		kgo.ProducerBatchMaxBytes(batchMaxBytes),
		kgo.MaxBufferedBytes(1 << 30),
		kgo.MaxBufferedRecords(100_000),
		kgo.ProducerLinger(produceLinger),
	}
	if o.NoIdempotence {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	return kgo.NewClient(append(opts, extra...)...)
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
