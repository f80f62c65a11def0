package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ztfbroker/ztfbroker/alertindex"
	"github.com/ztfbroker/ztfbroker/archive"
	"github.com/ztfbroker/ztfbroker/broker"
	"github.com/ztfbroker/ztfbroker/filter"
	"github.com/ztfbroker/ztfbroker/mirror"
	"github.com/ztfbroker/ztfbroker/packager"
	"github.com/ztfbroker/ztfbroker/portal"
	"github.com/ztfbroker/ztfbroker/protocol"
	"github.com/ztfbroker/ztfbroker/web"
)

// serveConfig is everything `serve` runs with: the process's own settings and
// each package's Config, filled from defaults, then the config file, then
// flags, all through one path: flat settings (see settings.go) applied to
// each section by name.
type serveConfig struct {
	processSection
	// Listeners are the Kafka listeners, each with its own address (the
	// security issue adds TLS and SASL to each).
	Listeners []listenerSection
	// Memory is memory.budget.bytes divided among the caches and the heap.
	Memory memoryPlan

	Broker   broker.Config
	Groups   broker.GroupConfig
	Listener protocol.Config
	// Web is the public HTTP listener (http.*) and the admin one.
	Web      web.Config
	Packager packagerSection
	Archive  archive.Config
	// Mirror copies an upstream cluster's topics into this broker.
	Mirror mirrorSection
	// Filter is the users' filters, run inside serve (filter.*).
	Filter filterSection
	// Authz is who may do what without an ACL (authz.*).
	Authz broker.AuthzConfig
	// Portal is the alert index and its web pages (portal.*).
	Portal portalSection
}

// portalSection is the config file's `portal:` mapping: whether serve runs
// the alert index and portal, the index's Config and the portal's limits.
type portalSection struct {
	Enabled     bool `yaml:"enabled"`
	IndexConfig `yaml:",inline"`
	WebConfig   `yaml:",inline"`
}

// IndexConfig and WebConfig name the two packages' Configs so that both
// can be inlined in portalSection.
type (
	IndexConfig = alertindex.Config
	WebConfig   = portal.Config
)

// processSection is the process's own settings.
type processSection struct {
	DataDir   string `yaml:"data.dir"`
	LogLevel  string `yaml:"log.level"`
	LogFormat string `yaml:"log.format"`
	// MemoryBudget is what the whole process may hold, caches included;
	// see memoryPlan.
	MemoryBudget int64 `yaml:"memory.budget.bytes"`
}

// listenerSection is one entry of the config file's `listeners:` list.
type listenerSection struct {
	// Name labels the listener (PLAINTEXT; Kafka's listener names).
	Name string `yaml:"name"`
	// Listen is the HOST:PORT accepted on.
	Listen string `yaml:"listen"`
	// Advertise is the HOST:PORT given to clients in Metadata; empty: the
	// listen address with an unspecified host replaced by this machine's
	// first non-loopback IPv4.
	Advertise string `yaml:"advertise"`
	// Protocol is the security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or
	// SASL_SSL. Empty: the name when it is one of those (Kafka's default
	// listener.security.protocol.map), else PLAINTEXT.
	Protocol string `yaml:"protocol"`
	// TLSCert and TLSKey are the PEM certificate chain and key of an SSL or
	// SASL_SSL listener, read again on SIGHUP.
	TLSCert string `yaml:"tls.cert"`
	TLSKey  string `yaml:"tls.key"`
	// SASLMechanisms of a SASL listener; empty: SCRAM-SHA-256,
	// SCRAM-SHA-512. PLAIN sends the password itself, so it is refused
	// without TLS unless SASLPlainAllowInsecure.
	SASLMechanisms         []string `yaml:"sasl.mechanisms"`
	SASLPlainAllowInsecure bool     `yaml:"sasl.plain.allow.insecure"`
	// AllowCIDRs, when set, are the only networks served; connections from
	// elsewhere are closed at accept and counted.
	AllowCIDRs []string `yaml:"allow.cidrs"`
}

// securityProtocol is the listener's protocol with its default applied.
func (l listenerSection) securityProtocol() string {
	if l.Protocol != "" {
		return l.Protocol
	}
	switch l.Name {
	case "SSL", "SASL_PLAINTEXT", "SASL_SSL":
		return l.Name
	}
	return "PLAINTEXT"
}

// check names every problem of the listener's security settings.
func (l listenerSection) check(where string) []error {
	var errs []error
	p := l.securityProtocol()
	tlsOn := p == "SSL" || p == "SASL_SSL"
	saslOn := p == "SASL_PLAINTEXT" || p == "SASL_SSL"
	switch {
	case p != "PLAINTEXT" && !tlsOn && !saslOn:
		errs = append(errs, fmt.Errorf("%s.protocol %q: want PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", where, p))
	case tlsOn && (l.TLSCert == "" || l.TLSKey == ""):
		errs = append(errs, fmt.Errorf("%s: protocol %s needs tls.cert and tls.key", where, p))
	case !tlsOn && (l.TLSCert != "" || l.TLSKey != ""):
		errs = append(errs, fmt.Errorf("%s: tls.cert and tls.key need protocol SSL or SASL_SSL, not %s", where, p))
	}
	if !saslOn && (len(l.SASLMechanisms) > 0 || l.SASLPlainAllowInsecure) {
		errs = append(errs, fmt.Errorf("%s: sasl.* settings need protocol SASL_PLAINTEXT or SASL_SSL, not %s", where, p))
	}
	for _, m := range l.SASLMechanisms {
		switch {
		case m == protocol.MechanismPlain && !tlsOn && !l.SASLPlainAllowInsecure:
			errs = append(errs, fmt.Errorf("%s.sasl.mechanisms: PLAIN sends passwords in clear without TLS; use SASL_SSL or set sasl.plain.allow.insecure: true", where))
		case m != protocol.MechanismPlain && m != protocol.MechanismScramSHA256 && m != protocol.MechanismScramSHA512:
			errs = append(errs, fmt.Errorf("%s.sasl.mechanisms %q: want SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN", where, m))
		}
	}
	for _, c := range l.AllowCIDRs {
		if _, err := netip.ParsePrefix(c); err != nil {
			errs = append(errs, fmt.Errorf("%s.allow.cidrs %q: want an address/bits network, e.g. 192.0.2.0/24", where, c))
		}
	}
	return errs
}

// listenerConfig is the protocol's configuration of a checked listener,
// with its certificate (nil without TLS) for SIGHUP to reload.
func (l listenerSection) listenerConfig() (protocol.ListenerConfig, *protocol.Certificate, error) {
	lc := protocol.ListenerConfig{Name: l.Name, AdvertisedAddr: l.Advertise}
	for _, c := range l.AllowCIDRs {
		lc.AllowCIDRs = append(lc.AllowCIDRs, netip.MustParsePrefix(c))
	}
	p := l.securityProtocol()
	if p == "SASL_PLAINTEXT" || p == "SASL_SSL" {
		lc.SASLMechanisms = l.SASLMechanisms
		if len(lc.SASLMechanisms) == 0 {
			lc.SASLMechanisms = []string{protocol.MechanismScramSHA256, protocol.MechanismScramSHA512}
		}
	}
	var cert *protocol.Certificate
	if p == "SSL" || p == "SASL_SSL" {
		var err error
		if cert, err = protocol.LoadCertificate(l.TLSCert, l.TLSKey); err != nil {
			return lc, nil, fmt.Errorf("listener %s: %w", l.Name, err)
		}
		lc.TLS = cert.TLSConfig()
	}
	return lc, cert, nil
}

// packagerSection is the config file's `packager:` mapping: whether serve
// runs the packager, and the packager's own Config inline.
type packagerSection struct {
	Enabled bool `yaml:"enabled"`
	// Bootstrap is where alerts are produced; empty means this broker.
	Bootstrap       []string `yaml:"bootstrap"`
	packager.Config `yaml:",inline"`
}

// filterSection is the config file's `filter:` mapping: whether serve runs
// the filters, and the runner's own Config inline.
type filterSection struct {
	Enabled       bool `yaml:"enabled"`
	filter.Config `yaml:",inline"`
}

// Names only flags give: the first listener's addresses.
const (
	flagListen    = "listeners.0.listen"
	flagAdvertise = "listeners.0.advertise"
)

// settingFlags are settings given on the command line, by name.
type settingFlags map[string]string

// set returns a flag.Func that records the setting name.
func (f *settingFlags) set(name string) func(string) error {
	return func(v string) error {
		if *f == nil {
			*f = settingFlags{}
		}
		(*f)[name] = v
		return nil
	}
}

// setAny is --set NAME=VALUE: any setting of the config file.
func (f *settingFlags) setAny(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok || strings.TrimSpace(name) == "" {
		return errors.New("want NAME=VALUE, such as log.retention.ms=86400000")
	}
	return f.set(strings.TrimSpace(name))(value)
}

// defaultServeConfig is serve without a config file or flags.
func defaultServeConfig() serveConfig {
	cfg := serveConfig{
		processSection: processSection{
			DataDir:      "./data",
			LogLevel:     "info",
			LogFormat:    "json",
			MemoryBudget: defaultMemoryBudget,
		},
		Listeners: []listenerSection{{Name: "PLAINTEXT", Listen: "0.0.0.0:9092"}},
		Broker:    broker.DefaultConfig(),
		Groups:    broker.DefaultGroupConfig(),
		Listener:  protocol.DefaultConfig(),
		Web:       web.DefaultConfig(),
		Archive:   archive.DefaultConfig(),
		Authz:     broker.DefaultAuthzConfig(),
		Mirror:    mirrorSection{Config: mirror.DefaultConfig()},
		Filter:    filterSection{Enabled: true, Config: filter.DefaultConfig()},
	}
	// Out of the box the packager simulates a night, so that a newcomer sees
	// tonight's topic fill with alerts; a survey sets source.kind: ingest.
	cfg.Packager.Enabled = true
	cfg.Packager.Config = packager.DefaultConfig()
	cfg.Packager.Source.Kind = packager.SourceSimulate
	cfg.Archive.Dir = ""
	// The portal follows the alert topics from inside serve.
	cfg.Portal = portalSection{Enabled: true, IndexConfig: alertindex.DefaultConfig(), WebConfig: portal.DefaultConfig()}
	// 0: a share of memory.budget.bytes (memoryPlan), unless set.
	cfg.Listener.QueuedMaxRequestBytes, cfg.Listener.MaxInflightResponseBytes = 0, 0
	return cfg
}

// loadServeConfig reads file (optional) and applies flags over it. Every
// problem is named in one joined error; nothing is half-applied because the
// caller starts nothing when this fails.
func loadServeConfig(file string, flags settingFlags) (serveConfig, error) {
	cfg := defaultServeConfig()
	set := newSettings()
	if file != "" {
		doc, err := readConfigFile(file)
		if err != nil {
			return cfg, err
		}
		set = doc.settings
		if doc.listeners != nil {
			cfg.Listeners = doc.listeners
		}
		cfg.Filter.Declared = doc.filters
	}
	for k, v := range flags {
		set.set(k, v, "flag") //nolint:errcheck // a flag always wins
	}
	var errs []error
	for name, v := range set.takeKeys(flagListen, flagAdvertise) {
		if len(cfg.Listeners) == 0 {
			cfg.Listeners = []listenerSection{{Name: "PLAINTEXT"}}
		}
		if name == flagListen {
			cfg.Listeners[0].Listen = v
		} else {
			cfg.Listeners[0].Advertise = v
		}
	}
	if _, ok := set.values["log.dirs"]; ok {
		errs = append(errs, errors.New("log.dirs: set data.dir instead (one folder holds the logs, the metadata, the packager's state and the archive)"))
		delete(set.values, "log.dirs")
	}

	// Each section takes its own names; what is left is the broker's.
	errs = append(errs, applyTagged(&cfg.processSection, set.takeKeys(taggedNames(processSection{})...))...)
	errs = append(errs, applyTagged(&cfg.Listener, set.takeKeys(taggedNames(protocol.Config{})...))...)
	errs = append(errs, applyTagged(&cfg.Web, set.takeKeys(taggedNames(web.Config{})...))...)
	errs = append(errs, applyTagged(&cfg.Authz, set.takeKeys(taggedNames(broker.AuthzConfig{})...))...)
	errs = append(errs, leftover("packager.", set.take("packager."), func(m map[string]string) []error {
		return applyTagged(&cfg.Packager, m)
	})...)
	errs = append(errs, leftover("archive.", set.take("archive."), func(m map[string]string) []error {
		return applyTagged(&cfg.Archive, m)
	})...)
	errs = append(errs, leftover("mirror.", set.take("mirror."), func(m map[string]string) []error {
		return applyTagged(&cfg.Mirror, m)
	})...)
	errs = append(errs, cfg.Mirror.check()...)
	errs = append(errs, leftover("filter.", set.take("filter."), func(m map[string]string) []error {
		return applyTagged(&cfg.Filter, m)
	})...)
	errs = append(errs, leftover("portal.", set.take("portal."), func(m map[string]string) []error {
		return applyTagged(&cfg.Portal, m)
	})...)
	if err := cfg.Groups.ApplySettings(set.takeKeys(broker.GroupSettings...)); err != nil {
		errs = append(errs, err)
	}
	brokerSettings := set.values
	brokerSettings["log.dirs"] = cfg.DataDir
	if err := cfg.Broker.ApplySettings(brokerSettings); err != nil {
		errs = append(errs, err)
	}

	if _, err := zapcore.ParseLevel(cfg.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("log.level %q: want debug, info, warn or error", cfg.LogLevel))
	}
	if cfg.LogFormat != "json" && cfg.LogFormat != "console" {
		errs = append(errs, fmt.Errorf("log.format %q: want json or console", cfg.LogFormat))
	}
	errs = append(errs, checkListeners(cfg.Listeners)...)
	if err := cfg.Web.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := cfg.Authz.Validate(); err != nil {
		errs = append(errs, err)
	}
	plan, err := planMemory(cfg.MemoryBudget)
	if err != nil {
		errs = append(errs, err)
	}
	cfg.Memory = plan
	cfg.Broker.MetaCacheBytes = plan.MetaCache
	// The log cleaner's key map comes out of the heap's share: a 64th.
	cfg.Broker.CleanerMapBytes = plan.Budget / 64
	cfg.Packager.HistoryMemory = packager.HistoryMemory{CacheBytes: plan.HistoryCache, MemTableBytes: plan.HistoryMemTable}
	if cfg.Listener.QueuedMaxRequestBytes == 0 {
		cfg.Listener.QueuedMaxRequestBytes = plan.RequestBytes
	}
	if cfg.Listener.MaxInflightResponseBytes == 0 {
		cfg.Listener.MaxInflightResponseBytes = plan.ResponseBytes
	}
	if err := cfg.Listener.Validate(); err != nil {
		errs = append(errs, err)
	}
	// Folders under the data directory unless the file names others.
	cfg.Packager.HistoryDir, cfg.Packager.RejectDir = packagerStateDirs(cfg.DataDir, cfg.Packager.HistoryDir, cfg.Packager.RejectDir)
	if cfg.Archive.Dir == "" {
		cfg.Archive.Dir = filepath.Join(cfg.DataDir, "archive")
	}
	if cfg.Portal.Dir == "" {
		cfg.Portal.Dir = filepath.Join(cfg.DataDir, "portal")
	}
	errs = append(errs, cfg.Portal.IndexConfig.Validate(), cfg.Portal.WebConfig.Validate())
	if cfg.Packager.Enabled {
		if err := cfg.Packager.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	// The archive's bootstrap defaults to this broker, known once listening.
	archiveCheck := cfg.Archive
	if len(archiveCheck.Bootstrap) == 0 {
		archiveCheck.Bootstrap = []string{"self"}
	}
	if err := archiveCheck.Validate(); err != nil {
		errs = append(errs, err)
	}
	if cfg.Filter.Enabled {
		if err := cfg.Filter.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		if file != "" {
			return cfg, fmt.Errorf("config %s:\n%w", file, err)
		}
		return cfg, fmt.Errorf("config:\n%w", err)
	}
	return cfg, nil
}

// leftover applies a section's settings and names those it did not know.
func leftover(prefix string, m map[string]string, apply func(map[string]string) []error) []error {
	errs := apply(m)
	for _, k := range sortedNames(m) {
		errs = append(errs, fmt.Errorf("%s%s: unknown setting", prefix, k))
	}
	return errs
}

func sortedNames(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// checkListeners names every problem of the listener list.
func checkListeners(ls []listenerSection) []error {
	var errs []error
	if len(ls) == 0 {
		errs = append(errs, errors.New("listeners: none; a broker needs at least one"))
	}
	seen := map[string]bool{}
	for i, l := range ls {
		where := fmt.Sprintf("listeners[%d]", i)
		if l.Name == "" {
			errs = append(errs, fmt.Errorf("%s.name: empty", where))
		}
		if seen[l.Name] {
			errs = append(errs, fmt.Errorf("%s.name %q: two listeners of that name", where, l.Name))
		}
		seen[l.Name] = true
		if _, _, err := net.SplitHostPort(l.Listen); err != nil {
			errs = append(errs, fmt.Errorf("%s.listen %q: want HOST:PORT", where, l.Listen))
		}
		if l.Advertise != "" {
			if h, _, err := net.SplitHostPort(l.Advertise); err != nil || h == "" {
				errs = append(errs, fmt.Errorf("%s.advertise %q: want HOST:PORT", where, l.Advertise))
			}
		}
		errs = append(errs, l.check(where)...)
	}
	return errs
}

// packagerStateDirs puts the packager's history and rejects under the data
// folder unless given: the one rule for serve and `package`.
func packagerStateDirs(dataDir, history, rejects string) (string, string) {
	if history == "" {
		history = filepath.Join(dataDir, "packager", "history")
	}
	if rejects == "" {
		rejects = filepath.Join(dataDir, "packager", "rejects")
	}
	return history, rejects
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
