package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
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
		emptyListsAreNone(reflect.ValueOf(c).Elem())
	}
	if !reflect.DeepEqual(fromFile, builtIn) {
		t.Fatalf("configs/ztfbroker.yaml differs from the built-in defaults:\nfile:     %+v\nbuilt-in: %+v", fromFile, builtIn)
	}
}

func TestBadConfigNamesEveryProblem(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(file, []byte(`
listeners:
  - name: PLAINTEXT
    listen: nowhere
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
	for _, want := range []string{"listeners[0].listen", "retention.ms", "num.partitions", "log.level", "no.such.setting",
		"socket.request.max.bytes", "packager.colour", "packager.format", "archive.level"} {
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

// TestEverySettingIsSettable sets each setting of the default file through
// --set (the flags' path) and through a nested and a flat file (the YAML's),
// and checks they land in the same place, so no setting is unreachable.
func TestEverySettingIsSettable(t *testing.T) {
	cases := []struct {
		name, value string
		got         func(c serveConfig) any
		want        any
	}{
		{"max.connections", "7", func(c serveConfig) any { return c.Listener.MaxConnections }, 7},
		{"socket.request.read.timeout.ms", "1500", func(c serveConfig) any { return c.Listener.RequestReadTimeout }, 1500 * time.Millisecond},
		{"socket.response.write.timeout.ms", "2500", func(c serveConfig) any { return c.Listener.WriteTimeout }, 2500 * time.Millisecond},
		{"fetch.max.wait.ms", "900", func(c serveConfig) any { return c.Listener.FetchMaxWait }, 900 * time.Millisecond},
		{"log.segment.bytes", "2097152", func(c serveConfig) any { return c.Broker.Topic.SegmentBytes }, int64(2 << 20)},
		{"log.retention.total.bytes", "1073741824", func(c serveConfig) any { return c.Broker.RetentionTotalBytes }, int64(1 << 30)},
		{"group.max.size", "12", func(c serveConfig) any { return c.Groups.MaxSize }, 12},
		{"packager.source.simulate.interval.ms", "250", func(c serveConfig) any { return c.Packager.Source.Simulate.Interval }, 250 * time.Millisecond},
		{"packager.bootstrap", "a:1,b:2", func(c serveConfig) any { return c.Packager.Bootstrap }, []string{"a:1", "b:2"}},
		{"archive.programs", "2", func(c serveConfig) any { return c.Archive.Programs }, []int{2}},
		{"http.write.timeout.ms", "5000", func(c serveConfig) any { return c.Web.WriteTimeout }, 5 * time.Second},
		{"http.max.connections", "9", func(c serveConfig) any { return c.Web.MaxConnections }, 9},
		{"admin.listener", "", func(c serveConfig) any { return c.Web.AdminAddr }, ""},
		{"memory.budget.bytes", "536870912", func(c serveConfig) any { return c.Memory.HistoryCache }, int64(64 << 20)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var flags settingFlags
			if err := flags.setAny(tc.name + "=" + tc.value); err != nil {
				t.Fatal(err)
			}
			viaFlag, err := loadServeConfig("", flags)
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.got(viaFlag); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("--set %s=%s: got %v, want %v", tc.name, tc.value, got, tc.want)
			}
			file := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(file, []byte(tc.name+": \""+tc.value+"\"\n"), 0o644)
			viaFile, err := loadServeConfig(file, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.got(viaFile); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("file %s: %s: got %v, want %v", tc.name, tc.value, got, tc.want)
			}
		})
	}
	// A nested mapping is the same setting as its flat name; both at once is a mistake.
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("packager:\n  source:\n    kind: ingest\n    ingest.dir: /tmp/in\npackager.source.kind: replay\n"), 0o644)
	if _, err := loadServeConfig(file, nil); err == nil || !strings.Contains(err.Error(), "packager.source.kind") {
		t.Errorf("a setting given twice was accepted or not named: %v", err)
	}
}

// TestListenersAreAList: several Kafka listeners, each with its own address.
func TestListenersAreAList(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte(`listeners:
  - name: INTERNAL
    listen: 127.0.0.1:9092
  - name: EXTERNAL
    listen: 0.0.0.0:9093
    advertise: alerts.example.org:9093
`), 0o644)
	cfg, err := loadServeConfig(file, settingFlags{flagAdvertise: "10.0.0.1:9092"})
	if err != nil {
		t.Fatal(err)
	}
	want := []listenerSection{{Name: "INTERNAL", Listen: "127.0.0.1:9092", Advertise: "10.0.0.1:9092"}, {Name: "EXTERNAL", Listen: "0.0.0.0:9093", Advertise: "alerts.example.org:9093"}}
	if !reflect.DeepEqual(cfg.Listeners, want) {
		t.Errorf("listeners %+v, want %+v", cfg.Listeners, want)
	}
	os.WriteFile(file, []byte("listeners:\n  - name: A\n    listen: 1.2.3.4:1\n    tls: yes\n  - name: A\n    listen: x\n"), 0o644)
	if _, err := loadServeConfig(file, nil); err == nil || !strings.Contains(err.Error(), "tls") {
		t.Errorf("an unknown listener key was accepted: %v", err)
	}
}

// emptyListsAreNone sets every empty slice under v to nil, so that a file's
// `[]` and a default left unset compare equal.
func emptyListsAreNone(v reflect.Value) {
	switch v.Kind() {
	case reflect.Slice:
		if v.Len() == 0 && v.CanSet() {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		for i := 0; i < v.Len(); i++ {
			emptyListsAreNone(v.Index(i))
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				emptyListsAreNone(v.Field(i))
			}
		}
	}
}

// TestProductionConfigLoads: the production example is a valid config, with
// the loopback superuser off and a SASL_SSL listener.
func TestProductionConfigLoads(t *testing.T) {
	cfg, err := loadServeConfig(filepath.Join("..", "..", "configs", "production.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Authz.LoopbackSuperuser || len(cfg.Listeners) != 2 || cfg.Listeners[0].Name != "SASL_SSL" {
		t.Errorf("production config: loopback superuser %v, listeners %+v", cfg.Authz.LoopbackSuperuser, cfg.Listeners)
	}
}
