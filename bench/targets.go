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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
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

// kfakeServeNames are the names FindKfakeServe looks for: what the build
// hint below produces, and the command's own name.
var kfakeServeNames = []string{"ztfbroker-kfake", "kfakeserve"}

const kfakeBuildHint = "build it with: go build -o ztfbroker-kfake ./bench/kfakeserve"

// FindKfakeServe returns the bench/kfakeserve binary: explicit (a path, or a
// name on PATH) when given, else the first of kfakeServeNames next to the
// running executable, else on PATH. The error says how to build one.
func FindKfakeServe(explicit string) (string, error) {
	exeDir := ""
	if exe, err := os.Executable(); err == nil {
		exeDir = filepath.Dir(exe)
	}
	return findKfakeServe(explicit, exeDir)
}

func findKfakeServe(explicit, exeDir string) (string, error) {
	if explicit != "" {
		p, err := exec.LookPath(explicit)
		if err != nil {
			return "", fmt.Errorf("bench: --kfake-binary: %w; %s", err, kfakeBuildHint)
		}
		return p, nil
	}
	var looked []string
	if exeDir != "" {
		for _, name := range kfakeServeNames {
			if p, err := exec.LookPath(filepath.Join(exeDir, name)); err == nil {
				return p, nil
			}
		}
		looked = append(looked, exeDir)
	}
	for _, name := range kfakeServeNames {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	looked = append(looked, "PATH")
	return "", fmt.Errorf("bench: --with-kfake runs kfake as its own process, and no %s is in %s (or give --kfake-binary); %s",
		strings.Join(kfakeServeNames, " or "), strings.Join(looked, " or "), kfakeBuildHint)
}

// startKfake runs the kfakeserve command (one broker, a fresh data
// directory) on a free loopback port, so that its CPU and RSS are its own.
func startKfake(ctx context.Context, cfg Config, dataDir string) (Target, func(), error) {
	t := Target{Name: "kfake", Kind: "kfake"}
	dir, err := os.MkdirTemp(dataDir, "kfake-")
	if err != nil {
		return t, nil, err
	}
	listen, err := freeAddr()
	if err != nil {
		return t, nil, err
	}
	args := []string{"--port", strconv.Itoa(portOf(listen)), "--data-dir", dir}
	if cfg.KfakeSync {
		args = append(args, "--sync")
	}
	return startProcess(ctx, t, cfg.Kfake, args, listen, dir)
}

// startProcess starts a broker subprocess and waits until it answers a
// metadata request on listen; dir is removed when it stops.
func startProcess(ctx context.Context, t Target, p *Process, args []string, listen, dir string) (Target, func(), error) {
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
			return t, nil, fmt.Errorf("%s (%s) exited before answering (%v): %s", t.Name, filepath.Base(p.Binary), err, out.tail())
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
