package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gopkg.in/yaml.v3"

	"github.com/ztfbroker/ztfbroker/broker"
	"github.com/ztfbroker/ztfbroker/protocol"
)

// serveConfig is everything `serve` runs with: the process's own settings and
// each package's Config, filled from defaults, then the YAML file, then flags.
type serveConfig struct {
	Listen    string
	Advertise string
	HTTP      string
	LogLevel  string
	LogFormat string

	Broker   broker.Config
	Listener protocol.Config
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
		LogLevel:  "info",
		LogFormat: "json",
		Broker:    broker.DefaultConfig(),
		Listener:  protocol.DefaultConfig(),
	}
	cfg.Broker.DataDir = "./data"
	settings := map[string]string{}
	var errs []error
	if file != "" {
		fileSettings, err := readYAML(file)
		if err != nil {
			return cfg, err
		}
		settings = fileSettings
	}
	for k, v := range flags {
		settings[k] = v
	}
	brokerSettings := map[string]string{}
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
		case "node.id":
			var n int64
			n, err = strconv.ParseInt(v, 10, 32)
			cfg.Listener.NodeID = int32(n)
		case "socket.request.max.bytes":
			var n int64
			n, err = strconv.ParseInt(v, 10, 32)
			cfg.Listener.MaxRequestBytes = int(n)
		case "connections.max.idle.ms":
			var n int64
			n, err = strconv.ParseInt(v, 10, 64)
			cfg.Listener.IdleTimeout = time.Duration(n) * time.Millisecond
		default:
			brokerSettings[key] = v
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", key, v, err))
		}
	}
	if err := cfg.Broker.ApplySettings(brokerSettings); err != nil {
		errs = append(errs, err)
	}
	if err := cfg.Listener.Validate(); err != nil {
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

// readYAML reads the flat top level of the config file into settings keyed
// by name, with every value as the string it would be given as a flag.
func readYAML(file string) (map[string]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var doc map[string]yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("config %s: %w", file, err)
	}
	out := map[string]string{}
	var errs []error
	for k, n := range doc {
		if n.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Errorf("%s (line %d): want a single value", k, n.Line))
			continue
		}
		out[k] = n.Value
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("config %s:\n%w", file, err)
	}
	return out, nil
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
