package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ztfbroker/ztfbroker/internal/binarytest"
)

// binary is the ztfbroker executable built once for the end-to-end tests, so
// they run the program as a user would and can kill it with SIGKILL.
var binary string

func TestMain(m *testing.M) { binarytest.Main(m, ".", &binary) }

// serveProc is a running `ztfbroker serve` process.
type serveProc struct {
	t       testing.TB
	DataDir string
	Kafka   string // host:port of the Kafka listener
	HTTP    string // host:port of the HTTP listener
	args    []string
	env     []string // the environment's, when nil
	cmd     *exec.Cmd
	mu      sync.Mutex
	logs    strings.Builder
	done    chan struct{}
}

// startBroker starts `ztfbroker serve` on free loopback ports with a fresh
// data directory (or dataDir when not empty) and waits until it answers. The
// packager stays off unless extra has a --packager flag.
func startBroker(t testing.TB, dataDir string, extra ...string) *serveProc {
	t.Helper()
	return startBrokerEnv(t, nil, dataDir, extra...)
}

// startBrokerEnv is startBroker with env as the process's environment.
func startBrokerEnv(t testing.TB, env []string, dataDir string, extra ...string) *serveProc {
	t.Helper()
	if dataDir == "" {
		dataDir = filepath.Join(t.TempDir(), "data")
	}
	b := &serveProc{t: t, DataDir: dataDir, Kafka: freeAddr(t), HTTP: freeAddr(t), env: env}
	b.args = append([]string{"serve", "--data-dir", dataDir, "--listen", b.Kafka, "--http", b.HTTP}, extra...)
	if !slices.ContainsFunc(extra, func(a string) bool { return strings.HasPrefix(a, "--packager") }) {
		// Tests of the broker leave out the simulated night unless they ask.
		b.args = append(b.args, "--packager=false")
	}
	if !slices.ContainsFunc(extra, func(a string) bool { return strings.HasPrefix(a, "--admin-http") }) {
		// Parallel tests must not race for the admin port 8081.
		b.args = append(b.args, "--admin-http=")
	}
	b.start()
	t.Cleanup(func() { b.Kill() })
	return b
}

func (b *serveProc) start() {
	b.t.Helper()
	b.cmd = exec.Command(binary, b.args...)
	b.cmd.Env = b.env
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		b.t.Fatal(err)
	}
	b.cmd.Stdout = b.cmd.Stderr
	if err := b.cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	b.done = make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			b.mu.Lock()
			b.logs.WriteString(sc.Text())
			b.logs.WriteByte('\n')
			b.mu.Unlock()
		}
		b.cmd.Wait()
		close(b.done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-b.done:
			b.t.Fatalf("ztfbroker serve exited at start:\n%s", b.Logs())
		default:
		}
		resp, err := http.Get("http://" + b.HTTP + "/healthz")
		if err != nil || resp.StatusCode == http.StatusBadRequest {
			// An HTTPS listener (http.tls.cert): readiness only, so
			// the certificate is not checked here.
			if resp != nil {
				resp.Body.Close()
			}
			resp, err = insecureHTTPS.Get("https://" + b.HTTP + "/healthz")
		}
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				if c, err := net.Dial("tcp", b.Kafka); err == nil {
					c.Close()
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.t.Fatalf("ztfbroker serve not ready after 30 s:\n%s", b.Logs())
}

// Logs returns everything the process has written so far.
func (b *serveProc) Logs() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.logs.String()
}

// waitLog reports whether the process logs a line containing substr within
// 10 s: its stderr is read by another goroutine, so a line written just
// before a response may arrive just after it.
func (b *serveProc) waitLog(substr string) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(b.Logs(), substr) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// Stop sends SIGTERM and waits for a clean exit.
func (b *serveProc) Stop() {
	b.t.Helper()
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		b.cmd.Process.Kill()
		b.t.Fatalf("ztfbroker did not stop within 30 s of SIGTERM:\n%s", b.Logs())
	}
	if code := b.cmd.ProcessState.ExitCode(); code != 0 {
		b.t.Fatalf("ztfbroker exited with %d after SIGTERM:\n%s", code, b.Logs())
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (b *serveProc) Kill() {
	if b.cmd == nil || b.cmd.Process == nil {
		return
	}
	b.cmd.Process.Signal(syscall.SIGKILL)
	<-b.done
}

// Restart starts the process again on the same ports and data directory.
func (b *serveProc) Restart() { b.start() }

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// runTool runs an external client (kcat, python3) and fails the test with its
// output when it fails; a missing tool fails too, it never skips.
func runTool(t *testing.T, ctx context.Context, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is needed by this test and is not installed (.ci/run installs it): %v", name, err)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = strings.NewReader(string(stdin))
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\nstderr:\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// runBinary runs the ztfbroker binary to completion and returns its output.
func runBinary(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// metric reads one unlabelled sample from the broker's /metrics.
func metric(t *testing.T, b *serveProc, name string) string {
	t.Helper()
	v, ok := metricSample(t, b, name)
	if !ok {
		t.Fatalf("metric %s not exported", name)
	}
	return v
}

// metricSample is the value of a /metrics sample (a name, with its labels
// if it has any), and whether it is exported.
func metricSample(t *testing.T, b *serveProc, name string) (string, bool) {
	t.Helper()
	resp, err := http.Get("http://" + b.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v, true
		}
	}
	return "", false
}

// insecureHTTPS asks an HTTPS test broker whether it is up; tests that
// check its certificate use their own client.
var insecureHTTPS = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
