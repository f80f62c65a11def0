package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gopkg.in/yaml.v3"

	"github.com/ztfbroker/ztfbroker/archive"
	"github.com/ztfbroker/ztfbroker/broker"
	"github.com/ztfbroker/ztfbroker/packager"
	"github.com/ztfbroker/ztfbroker/protocol"
)

// serveConfig is everything `serve` runs with: the process's own settings and
// each package's Config, filled from defaults, then the YAML file, then flags.
type serveConfig struct {
	Listen    string
	Advertise string
	HTTP      string
	// AdminHTTP is the HOST:PORT serving pprof, loopback by default;
	// empty means no admin listener.
	AdminHTTP string
	LogLevel  string
	LogFormat string
	// MemoryLimit is the Go runtime's soft memory limit (GOMEMLIMIT):
	// near it the collector runs more often and returns freed memory to
	// the system, which keeps the resident size bounded whatever the
	// amount of data stored or fetched. 0 means none.
	MemoryLimit int64

	Broker   broker.Config
	Groups   broker.GroupConfig
	Listener protocol.Config
	Packager packagerSection
	Archive  archive.Config
}

// packagerSection is the config file's `packager:` mapping: whether serve
// runs the packager, and the packager's own Config inline.
type packagerSection struct {
	Enabled bool `yaml:"enabled"`
	// Bootstrap is where alerts are produced; empty means this broker.
	Bootstrap       []string `yaml:"bootstrap"`
	packager.Config `yaml:",inline"`
}

// settingFlags are flags given on the command line, by their YAML key.
type settingFlags map[string]string

func (f *settingFlags) set(key string) func(string) error {
	return func(v string) error {
		if *f == nil {
			*f = settingFlags{}
		}
		(*f)[key] = v
		return nil
	}
}

// loadServeConfig reads file (optional) and applies flags over it. Every
// problem is named in one joined error; nothing is half-applied because the
// caller starts nothing when this fails.
func loadServeConfig(file string, flags settingFlags) (serveConfig, error) {
	cfg := serveConfig{
		Listen:    "0.0.0.0:9092",
		HTTP:      "0.0.0.0:8080",
		AdminHTTP: "127.0.0.1:8081",
		LogLevel:  "info",
		LogFormat: "json",
		// 160 MiB: the broker holds no record data beyond request and
		// fetch buffers, so this is headroom, not a cache.
		MemoryLimit: 160 << 20,
		Broker:      broker.DefaultConfig(),
		Groups:      broker.DefaultGroupConfig(),
		Listener:    protocol.DefaultConfig(),
		Archive:     archive.DefaultConfig(),
	}
	cfg.Broker.DataDir = "./data"
	// Out of the box the packager simulates a night, so that a newcomer sees
	// tonight's topic fill with alerts; a survey sets source.kind: ingest.
	cfg.Packager.Enabled = true
	cfg.Packager.Config = packager.DefaultConfig()
	cfg.Packager.Source.Kind = "simulate"
	settings := map[string]string{}
	var errs []error
	if file != "" {
		doc, err := readYAML(file)
		if err != nil {
			return cfg, err
		}
		settings = doc.settings
		errs = append(errs, decodeSection(doc.packager, "packager", &cfg.Packager))
		errs = append(errs, decodeSection(doc.archive, "archive", &cfg.Archive))
	}
	for k, v := range flags {
		settings[k] = v
	}
	brokerSettings, groupSettings := map[string]string{}, map[string]string{}
	isGroup := map[string]bool{}
	for _, k := range broker.GroupSettings {
		isGroup[k] = true
	}
	for key, v := range settings {
		var err error
		switch key {
		case "data.dir":
			brokerSettings["log.dirs"] = v
		case "listen":
			cfg.Listen = v
		case "advertise":
			cfg.Advertise = v
		case "http":
			cfg.HTTP = v
		case "log.level":
			cfg.LogLevel = v
			if _, e := zapcore.ParseLevel(v); e != nil {
				err = errors.New("want debug, info, warn or error")
			}
		case "log.format":
			cfg.LogFormat = v
			if v != "json" && v != "console" {
				err = errors.New("want json or console")
			}
		case "memory.limit.bytes":
			cfg.MemoryLimit, err = strconv.ParseInt(v, 10, 64)
			if err == nil && cfg.MemoryLimit < 0 {
				err = errors.New("must not be negative")
			}
		case "node.id":
			var n int64
			n, err = strconv.ParseInt(v, 10, 32)
			cfg.Listener.NodeID = int32(n)
		case "socket.request.max.bytes":
			var n int64
			n, err = strconv.ParseInt(v, 10, 32)
			cfg.Listener.MaxRequestBytes = int(n)
		case "fetch.max.bytes":
			var n int64
			n, err = strconv.ParseInt(v, 10, 32)
			cfg.Listener.FetchMaxBytes = int(n)
		case "connections.max.idle.ms":
			var n int64
			n, err = strconv.ParseInt(v, 10, 64)
			cfg.Listener.IdleTimeout = time.Duration(n) * time.Millisecond
		default:
			if isGroup[key] {
				groupSettings[key] = v
			} else {
				brokerSettings[key] = v
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", key, v, err))
		}
	}
	if err := cfg.Broker.ApplySettings(brokerSettings); err != nil {
		errs = append(errs, err)
	}
	if err := cfg.Groups.ApplySettings(groupSettings); err != nil {
		errs = append(errs, err)
	}
	if err := cfg.Listener.Validate(); err != nil {
		errs = append(errs, err)
	}
	// Folders under the data directory unless the file names others.
	dataDir := cfg.Broker.DataDir
	if cfg.Packager.HistoryDir == "" {
		cfg.Packager.HistoryDir = filepath.Join(dataDir, "packager", "history")
	}
	if cfg.Packager.RejectDir == "" {
		cfg.Packager.RejectDir = filepath.Join(dataDir, "packager", "rejects")
	}
	if cfg.Archive.Dir == "" || cfg.Archive.Dir == archive.DefaultConfig().Dir {
		cfg.Archive.Dir = filepath.Join(dataDir, "archive")
	}
	if cfg.Packager.Enabled {
		if err := cfg.Packager.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	// The archive's bootstrap defaults to this broker, known once listening.
	archiveCheck := cfg.Archive
	if len(archiveCheck.Bootstrap) == 0 {
		archiveCheck.Bootstrap = []string{cfg.Listen}
	}
	if err := archiveCheck.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		if file != "" {
			return cfg, fmt.Errorf("config %s:\n%w", file, err)
		}
		return cfg, fmt.Errorf("config:\n%w", err)
	}
	return cfg, nil
}

// configFile is the config file: flat settings, keyed by name with every
// value as the string it would be given as a flag, and two sections.
type configFile struct {
	settings          map[string]string
	packager, archive *yaml.Node
}

func readYAML(file string) (configFile, error) {
	out := configFile{settings: map[string]string{}}
	data, err := os.ReadFile(file)
	if err != nil {
		return out, fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return out, fmt.Errorf("config %s: %w", file, err)
	}
	if len(doc.Content) == 0 {
		return out, nil // an empty file keeps every default
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return out, fmt.Errorf("config %s: want a mapping of settings at the top", file)
	}
	var errs []error
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, n := top.Content[i].Value, top.Content[i+1]
		switch {
		case k == "packager":
			out.packager = n
		case k == "archive":
			out.archive = n
		case n.Kind != yaml.ScalarNode:
			errs = append(errs, fmt.Errorf("%s (line %d): want a single value", k, n.Line))
		default:
			if _, dup := out.settings[k]; dup {
				errs = append(errs, fmt.Errorf("%s (line %d): set twice", k, n.Line))
			}
			out.settings[k] = n.Value
		}
	}
	if err := errors.Join(errs...); err != nil {
		return out, fmt.Errorf("config %s:\n%w", file, err)
	}
	return out, nil
}

// decodeSection decodes a section of the file over the defaults in into,
// refusing keys the section does not have.
func decodeSection(n *yaml.Node, name string, into any) error {
	if n == nil {
		return nil
	}
	data, err := yaml.Marshal(n)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(into); err != nil {
		return fmt.Errorf("%s (line %d): %w", name, n.Line, err)
	}
	return nil
}

// logger builds the process logger: structured, one line per event.
func (c serveConfig) logger(w io.Writer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(c.LogLevel)
	if err != nil {
		return nil, err
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder = zapcore.NewJSONEncoder(encCfg)
	if c.LogFormat == "console" {
		enc = zapcore.NewConsoleEncoder(encCfg)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), level)), nil
}
