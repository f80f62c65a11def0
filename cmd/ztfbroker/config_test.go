package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestDefaultConfigFileMatchesDefaults loads configs/ztfbroker.yaml, which
// documents every setting with its default, and checks it changes nothing:
// the file and the code cannot drift apart.
func TestDefaultConfigFileMatchesDefaults(t *testing.T) {
	fromFile, err := loadServeConfig(filepath.Join("..", "..", "configs", "ztfbroker.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	builtIn, err := loadServeConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	// `workers: 0` means one per core; empty lists are the same as none.
	if fromFile.Packager.Workers == 0 {
		fromFile.Packager.Workers = builtIn.Packager.Workers
	}
	for _, c := range []*serveConfig{&fromFile, &builtIn} {
		if len(c.Packager.Bootstrap) == 0 {
			c.Packager.Bootstrap = nil
		}
		if len(c.Packager.Source.ReplayPaths) == 0 {
			c.Packager.Source.ReplayPaths = nil
		}
		if len(c.Archive.Bootstrap) == 0 {
			c.Archive.Bootstrap = nil
		}
	}
	if !reflect.DeepEqual(fromFile, builtIn) {
		t.Fatalf("configs/ztfbroker.yaml differs from the built-in defaults:\nfile:     %+v\nbuilt-in: %+v", fromFile, builtIn)
	}
}

func TestBadConfigNamesEveryProblem(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(file, []byte(`
listen: 0.0.0.0:9092
retention.ms: soon
num.partitions: -3
log.level: chatty
no.such.setting: 1
socket.request.max.bytes: big
packager:
  enabled: true
  format: xml
  colour: blue
archive:
  level: 12
`), 0o644)
	_, err := loadServeConfig(file, nil)
	if err == nil {
		t.Fatal("a config with eight problems was accepted")
	}
	for _, want := range []string{"retention.ms", "num.partitions", "log.level", "no.such.setting",
		"socket.request.max.bytes", "colour", "archive.level"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not name %s:\n%v", want, err)
		}
	}
}

// TestServeRefusesBadConfig runs the binary: a wrong config stops the start
// with the problems named and nothing started.
func TestServeRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "bad.yaml")
	os.WriteFile(file, []byte("num.partitions: zero\nsegment.bytes: 12\n"), 0o644)
	out, err := runBinary(t, "serve", "--config", file, "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0")
	if err == nil {
		t.Fatalf("serve started with a bad config:\n%s", out)
	}
	for _, want := range []string{"num.partitions", "segment.bytes"} {
		if !strings.Contains(out, want) {
			t.Errorf("serve's refusal does not name %s:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Errorf("serve created its data directory before refusing the config")
	}
}
