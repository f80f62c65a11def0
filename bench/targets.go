package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

func numCPU() int { return runtime.NumCPU() }

func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// startKfake runs franz-go's kfake in this process with a data directory,
// one broker: the reference peer.
func startKfake(dataDir string) (Target, func(), error) {
	t := Target{Name: "kfake", Kind: "kfake", PID: os.Getpid()}
	dir, err := os.MkdirTemp(dataDir, "kfake-")
	if err != nil {
		return t, nil, err
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(dir))
	if err != nil {
		return t, nil, fmt.Errorf("start kfake: %w", err)
	}
	t.Addrs = c.ListenAddrs()
	return t, func() { c.Close(); os.RemoveAll(dir) }, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// lockedBuffer collects a subprocess's output for error messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.b.Bytes()
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// startEmbedded runs `ztfbroker serve` on free loopback ports with a fresh
// data directory and waits until it answers a metadata request.
func startEmbedded(ctx context.Context, cfg Config, dataDir string) (Target, func(), error) {
	t := Target{Name: "ztfbroker", Kind: "embedded"}
	dir, err := os.MkdirTemp(dataDir, "ztfbroker-")
	if err != nil {
		return t, nil, err
	}
	listen, err := freeAddr()
	if err != nil {
		return t, nil, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return t, nil, err
	}
	args := []string{"serve", "--data-dir", filepath.Join(dir, "data"), "--listen", listen, "--http", httpAddr}
	return startProcess(ctx, t, cfg.Embedded, args, listen, dir)
}

// startKfakeProcess runs kfake in a child process (`<binary> bench
// --serve-kfake ADDR --data-dir D`), so that its CPU and RSS are its own.
func startKfakeProcess(ctx context.Context, cfg Config, dataDir string) (Target, func(), error) {
	t := Target{Name: "kfake", Kind: "kfake-process"}
	dir, err := os.MkdirTemp(dataDir, "kfake-")
	if err != nil {
		return t, nil, err
	}
	listen, err := freeAddr()
	if err != nil {
		return t, nil, err
	}
	args := []string{"bench", "--serve-kfake", listen, "--data-dir", dir}
	return startProcess(ctx, t, cfg.KfakeProcess, args, listen, dir)
}

// ServeKfake runs a one-broker kfake with a data directory on addr until
// ctx ends: the child side of Config.KfakeProcess.
func ServeKfake(ctx context.Context, addr, dataDir string) error {
	port := portOf(addr)
	if port == 0 {
		return fmt.Errorf("bench: --serve-kfake %q: want 127.0.0.1:PORT", addr)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dataDir))
	if err != nil {
		return fmt.Errorf("start kfake: %w", err)
	}
	<-ctx.Done()
	c.Close()
	return nil
}

// startProcess starts a broker subprocess and waits until it answers a
// metadata request on listen; dir is removed when it stops.
func startProcess(ctx context.Context, t Target, p *Embedded, args []string, listen, dir string) (Target, func(), error) {
	t.Addrs = []string{listen}
	cmd := exec.Command(p.Binary, args...)
	cmd.Env = append(os.Environ(), p.Env...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return t, nil, fmt.Errorf("start %s: %w", p.Binary, err)
	}
	t.PID = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		os.RemoveAll(dir)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			os.RemoveAll(dir)
			return t, nil, fmt.Errorf("%s %s exited before answering (%v): %s", t.Name, args[0], err, out.tail())
		default:
		}
		if err := ping(ctx, t.Addrs); err == nil {
			return t, stop, nil
		} else if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			return t, nil, fmt.Errorf("%s on %s did not answer in 30s (%v): %s", t.Name, listen, err, out.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ping(ctx context.Context, addrs []string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.DialTimeout(time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = kadm.NewClient(cl).BrokerMetadata(ctx)
	return err
}
