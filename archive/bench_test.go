package archive

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// BenchmarkArchive archives simulated alerts three ways in one run, all with
// the same bytes in and MB/s counted on the alert bytes:
//
//   - kafka: Build, consuming from an in-process kfake cluster;
//   - files: the same writer (candid, tar, MD5SUMS, parallel gzip, fsyncs)
//     fed from the alert files on disk, as tar is;
//   - tar|gzip-6: GNU `tar -c | gzip -6` of those files.
//
// ARCHIVE_BENCH_MB sets the size (default 32; the figure is 2048):
//
//	ARCHIVE_BENCH_MB=2048 go test ./archive/ -run '^$' -bench Archive -benchtime 1x
func BenchmarkArchive(b *testing.B) {
	mb := 32
	if s := os.Getenv("ARCHIVE_BENCH_MB"); s != "" {
		var err error
		if mb, err = strconv.Atoi(s); err != nil || mb <= 0 {
			b.Fatalf("ARCHIVE_BENCH_MB=%q", s)
		}
	}
	for _, tool := range []string{"tar", "gzip", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s is needed: %v", tool, err)
		}
	}
	srcDir := b.TempDir()
	sim := newSimulator(b, 42)
	var files []string
	var total int64
	for i := 0; total < int64(mb)<<20; i++ {
		v := sim.alert(b, i)
		p := filepath.Join(srcDir, strconv.FormatInt(sim.candid0+int64(i), 10)+".avro")
		if err := os.WriteFile(p, v, 0o644); err != nil {
			b.Fatal(err)
		}
		files = append(files, p)
		total += int64(len(v))
	}
	b.Logf("%d simulated alerts, %.1f MB", len(files), float64(total)/1e6)

	b.Run("kafka", func(b *testing.B) {
		topic := Topic(testNight, Public)
		c := newCluster(b, 4, topic)
		values := make([][]byte, 0, 1024)
		for chunk := 0; chunk < len(files); chunk += 1024 {
			values = values[:0]
			for _, f := range files[chunk:min(chunk+1024, len(files))] {
				v, err := os.ReadFile(f)
				if err != nil {
					b.Fatal(err)
				}
				values = append(values, v)
			}
			produce(b, c.ListenAddrs(), topic, 4, values, testNight.t)
		}
		b.SetBytes(total)
		b.ResetTimer()
		var size int64
		for range b.N {
			out := b.TempDir()
			res, err := Build(context.Background(), Job{Bootstrap: c.ListenAddrs(), Night: testNight, Program: Public, OutDir: out})
			if err != nil {
				b.Fatal(err)
			}
			size = res.Size
		}
		b.ReportMetric(float64(size)/float64(total), "gz/in")
	})

	b.Run("files", func(b *testing.B) {
		b.SetBytes(total)
		var size int64
		for range b.N {
			size = archiveFiles(b, files, b.TempDir())
		}
		b.ReportMetric(float64(size)/float64(total), "gz/in")
	})

	b.Run("tar|gzip-6", func(b *testing.B) {
		b.SetBytes(total)
		var size int64
		for range b.N {
			out := filepath.Join(b.TempDir(), "x.tar.gz")
			cmd := exec.Command("sh", "-c", `tar -cf - -C "$1" . | gzip -6 > "$2" && sync "$2"`, "sh", srcDir, out)
			if msg, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, msg)
			}
			st, err := os.Stat(out)
			if err != nil {
				b.Fatal(err)
			}
			size = st.Size()
		}
		b.ReportMetric(float64(size)/float64(total), "gz/in")
	})
}

// archiveFiles runs the archive writer on alert files instead of a topic.
func archiveFiles(b *testing.B, files []string, out string) int64 {
	job := Job{Bootstrap: []string{"-"}, Night: testNight, Program: Public, OutDir: out}
	if err := job.fill(); err != nil {
		b.Fatal(err)
	}
	r := &run{job: job, paths: pathsFor(out, FileName(job.Night, job.Program)), log: zap.NewNop(), cr: newCandidReader()}
	if err := r.start(nil); err != nil {
		b.Fatal(err)
	}
	r.nextAt = job.CheckpointBytes
	for i, f := range files {
		v, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		if err := r.add(&kgo.Record{Value: v, Offset: int64(i), Timestamp: testNight.t.Add(time.Duration(i) * time.Second)}); err != nil {
			b.Fatal(err)
		}
		if r.gz.size >= r.nextAt {
			if err := r.checkpoint(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := r.finish(); err != nil {
		b.Fatal(err)
	}
	return r.size
}
