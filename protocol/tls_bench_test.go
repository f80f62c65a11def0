package protocol

import (
	"crypto/tls"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// BenchmarkConsumeSASLSSL consumes the same 32 MiB topic over PLAINTEXT and
// over SASL_SSL (SCRAM-SHA-512, TLS 1.3), one fresh consumer per
// iteration, so that the cost of encryption shows as a throughput ratio
// (the goal: SASL_SSL at least 70% of PLAINTEXT).
func BenchmarkConsumeSASLSSL(b *testing.B) {
	dir := b.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool := writeSelfSigned(b, certFile, keyFile, "bench")
	cert, err := LoadCertificate(certFile, keyFile)
	if err != nil {
		b.Fatal(err)
	}
	const records, size = 2048, 16 << 10
	for _, tc := range []struct {
		name string
		lc   ListenerConfig
		opts []kgo.Opt
	}{
		{"PLAINTEXT", ListenerConfig{Name: "PLAINTEXT"}, nil},
		{"SASL_SSL", ListenerConfig{Name: "SASL_SSL", TLS: cert.TLSConfig(), SASLMechanisms: []string{MechanismScramSHA512}},
			[]kgo.Opt{kgo.DialTLSConfig(&tls.Config{RootCAs: pool, ServerName: "localhost"}),
				kgo.SASL(scram.Auth{User: "alice", Pass: "s3cret"}.AsSha512Mechanism())}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			addr, _, _ := startSASLServer(b, tc.lc)
			prod := newClient(b, addr, append(tc.opts, kgo.AllowAutoTopicCreation(), kgo.ProducerLinger(time.Millisecond))...)
			ctx := ctxT(b, 5*time.Minute)
			value := make([]byte, size)
			for range records {
				prod.Produce(ctx, &kgo.Record{Topic: "bench", Value: value}, func(_ *kgo.Record, err error) {
					if err != nil {
						b.Error(err)
					}
				})
			}
			if err := prod.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(records * size)
			b.ResetTimer()
			for range b.N {
				cl := newClient(b, addr, append(tc.opts, kgo.ConsumeTopics("bench"),
					kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
				consume(b, cl, records, time.Minute)
				cl.Close()
			}
		})
	}
}
