package main

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/ztfbroker/ztfbroker/broker"
	"github.com/ztfbroker/ztfbroker/protocol"
	"github.com/ztfbroker/ztfbroker/web"
)

// outOfRange holds, for every numeric top-level setting, values serve must
// refuse, each with an error naming the setting and what it allows. The
// packager.* and archive.* settings are their packages' own (their Validate
// tests). TestOutOfRangeCoversEveryNumericSetting keeps this complete.
var outOfRange = map[string][]string{
	// The process.
	"memory.budget.bytes": {"268435455", "-1"},
	// Kafka listeners (protocol.Config): 0 is the default there.
	"node.id":                                   {"-1", "2147483648"},
	"socket.request.max.bytes":                  {"1023", "2147483648"},
	"connections.max.idle.ms":                   {"-1", "9223372036855"},
	"socket.request.read.timeout.ms":            {"-1"},
	"socket.response.write.timeout.ms":          {"-1"},
	"max.connections":                           {"-1"},
	"fetch.max.bytes":                           {"-1", "2147483648"},
	"fetch.max.wait.ms":                         {"-1"},
	"socket.send.buffer.bytes":                  {"-2", "131071", "67108865"},
	"queued.max.request.bytes":                  {"-1", "1000"},
	"max.inflight.response.bytes":               {"-1", "1000"},
	"connection.max.inflight.response.bytes":    {"-1"},
	"connection.failed.authentication.delay.ms": {"-2", "600000"},
	// The web listeners.
	"http.max.connections":        {"-1"},
	"http.read.header.timeout.ms": {"0", "-1"},
	"http.read.timeout.ms":        {"0", "-1"},
	"http.write.timeout.ms":       {"0", "-1"},
	"http.idle.timeout.ms":        {"0", "9223372036855"},
	"http.max.header.bytes":       {"0", "-1"},
	// The mirror (checked whether or not it is enabled).
	"mirror.refresh.ms": {"99", "3600001"},
	"mirror.timeout.ms": {"0", "600001"},
	// Consumer groups and producer ids.
	"offsets.retention.minutes":           {"0", "153722867281"},
	"offsets.retention.check.interval.ms": {"0", "9223372036855"},
	"group.min.session.timeout.ms":        {"0", "-1"},
	"group.max.session.timeout.ms":        {"-1", "5999"},
	"group.max.size":                      {"0", "-1"},
	"group.initial.rebalance.delay.ms":    {"-1"},
	"producer.id.expiration.ms":           {"0", "9223372036855"},
	// Topics and their logs (broker.Config; the same ranges per topic).
	"log.retention.ms":                    {"-5", "-2", "9223372036855"},
	"log.retention.minutes":               {"-5"},
	"log.retention.hours":                 {"-2"},
	"log.retention.bytes":                 {"-2"},
	"log.retention.total.bytes":           {"-2"},
	"log.retention.check.interval.ms":     {"0", "-1"},
	"log.dir.free.min.bytes":              {"-2"},
	"log.scrub.bytes.per.second":          {"-2"},
	"log.journal.bytes":                   {"-2", "1000"},
	"log.segment.bytes":                   {"1048575", "2147483648"},
	"log.roll.ms":                         {"0", "-1"},
	"log.cleaner.delete.retention.ms":     {"-1"},
	"log.cleaner.backoff.ms":              {"0", "-1"},
	"log.cleaner.max.compaction.lag.ms":   {"0", "-1"},
	"log.cleaner.min.compaction.lag.ms":   {"-1"},
	"log.index.interval.bytes":            {"0", "-1"},
	"log.flush.interval.ms":               {"-1"},
	"message.max.bytes":                   {"60", "-1"},
	"log.message.timestamp.before.max.ms": {"-1"},
	"log.message.timestamp.after.max.ms":  {"-1"},
	"num.partitions":                      {"0", "10001"},
	// Filters (filter.Config).
	"filter.max.poll.records":      {"0", "100001"},
	"filter.recovery.scan.records": {"0", "10000001"},
	"filter.pause.errors":          {"0", "1001"},
	"filter.cost.limit":            {"99", "1000000001"},
	// The alert portal (alertindex.Config, portal.Config).
	"portal.retention.check.ms":  {"999", "86400001"},
	"portal.metadata.max.age.ms": {"0", "3600001"},
	"portal.cache.bytes":         {"1048575", "68719476737"},
	"portal.tap.bytes":           {"1048575", "1073741825"},
	"portal.max.radius.arcsec":   {"0", "36001"},
	"portal.max.limit":           {"0", "100001"},
	"portal.scan.max":            {"999", "10000001"},
}

// rangeWords are how the packages' errors say what a setting allows.
var rangeWords = []string{"out of range", "must be", "must not", "at least", "below"}

func namesSettingAndRange(msg, name string) bool {
	if !strings.Contains(msg, name) {
		return false
	}
	for _, w := range rangeWords {
		if strings.Contains(msg, w) {
			return true
		}
	}
	return false
}

// TestOutOfRangeSettingsRefused loads each bad value through the config
// loader serve runs, as a flag and as a file line.
func TestOutOfRangeSettingsRefused(t *testing.T) {
	for _, name := range sortedKeys(outOfRange) {
		for _, v := range outOfRange[name] {
			_, err := loadServeConfig("", settingFlags{name: v})
			if err == nil {
				t.Errorf("--set %s=%s accepted", name, v)
			} else if !namesSettingAndRange(err.Error(), name) {
				t.Errorf("--set %s=%s: the error does not name the setting and its range:\n%v", name, v, err)
			}
			file := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(file, []byte(name+": "+v+"\n"), 0o644)
			if _, err := loadServeConfig(file, nil); err == nil {
				t.Errorf("file %s: %s accepted", name, v)
			} else if !namesSettingAndRange(err.Error(), name) {
				t.Errorf("file %s: %s: the error does not name the setting and its range:\n%v", name, v, err)
			}
		}
	}
}

// TestServeRefusesOutOfRange runs the binary with every out-of-range value
// in one config file: it refuses to start, naming each, and creates nothing.
func TestServeRefusesOutOfRange(t *testing.T) {
	dir := t.TempDir()
	var file strings.Builder
	for _, name := range sortedKeys(outOfRange) {
		if name == "log.retention.minutes" || name == "log.retention.hours" {
			continue // synonyms of log.retention.ms: one of the three at a time
		}
		file.WriteString(name + ": " + strconv.Quote(outOfRange[name][0]) + "\n")
	}
	path := filepath.Join(dir, "bad.yaml")
	os.WriteFile(path, []byte(file.String()), 0o644)
	out, err := runBinary(t, "serve", "--config", path, "--data-dir", filepath.Join(dir, "data"),
		"--listen", "127.0.0.1:0", "--http", "127.0.0.1:0")
	if err == nil {
		t.Fatalf("serve started with every numeric setting out of range:\n%s", out)
	}
	for _, name := range sortedKeys(outOfRange) {
		if name == "log.retention.minutes" || name == "log.retention.hours" {
			continue
		}
		if !strings.Contains(out, name) {
			t.Errorf("serve's refusal does not name %s", name)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Error("serve created its data directory before refusing the config")
	}
	// The example, through --set.
	out, err = runBinary(t, "serve", "--set", "log.retention.ms=-5", "--data-dir", filepath.Join(dir, "data"),
		"--listen", "127.0.0.1:0", "--http", "127.0.0.1:0")
	if err == nil || !strings.Contains(out, `log.retention.ms "-5": out of range: -1 (forever) or 0 to`) {
		t.Errorf("serve --set log.retention.ms=-5: %v\n%s", err, out)
	}
}

// TestOutOfRangeCoversEveryNumericSetting finds every numeric top-level
// setting (the default file's, the tagged Config structs', the broker's
// and the groups' names) and fails for one without a value in outOfRange.
func TestOutOfRangeCoversEveryNumericSetting(t *testing.T) {
	numeric := map[string]string{} // name -> where it was found
	doc, err := readConfigFile(filepath.Join("..", "..", "configs", "ztfbroker.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range doc.settings.values {
		if strings.HasPrefix(name, "packager.") || strings.HasPrefix(name, "archive.") {
			continue
		}
		if _, err := strconv.ParseInt(v, 10, 64); err == nil {
			numeric[name] = "configs/ztfbroker.yaml"
		}
	}
	for _, section := range []any{processSection{}, protocol.Config{}, web.Config{}, broker.AuthzConfig{}} {
		walkTagged(reflect.ValueOf(section), "", func(name string, f reflect.Value) {
			switch f.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
				reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
				numeric[name] = reflect.TypeOf(section).String()
			}
		})
	}
	for _, name := range broker.GroupSettings {
		numeric[name] = "broker.GroupSettings"
	}
	for _, name := range broker.NumericSettings() {
		numeric[name] = "broker.NumericSettings"
	}
	if len(numeric) < 40 {
		t.Fatalf("found only %d numeric settings; the walk is broken: %v", len(numeric), numeric)
	}
	for _, name := range sortedKeys(numeric) {
		if _, ok := outOfRange[name]; !ok {
			t.Errorf("%s (%s): numeric, but no out-of-range value in outOfRange", name, numeric[name])
		}
	}
	for name := range outOfRange {
		if _, ok := numeric[name]; !ok {
			t.Errorf("%s: in outOfRange but not a numeric setting", name)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// packagerArchiveOutOfRange are bad values of the packager's and archiver's
// numeric settings, refused by their packages' Validate when serve loads
// its config.
var packagerArchiveOutOfRange = map[string][]string{
	"packager.history.days":                {"-1", "NaN", "1e300"},
	"packager.workers":                     {"-1", "100000000"},
	"packager.partitions":                  {"-2"},
	"packager.source.ingest.poll.ms":       {"-1"},
	"packager.source.simulate.alerts":      {"-1"},
	"packager.source.simulate.objects":     {"-1"},
	"packager.source.simulate.exposures":   {"-1"},
	"packager.source.simulate.interval.ms": {"-1"},
	"packager.source.simulate.cadence.ms":  {"-1"},
	"packager.source.simulate.night.ms":    {"-1", "86400001"},
	"packager.source.simulate.programid":   {"-3", "7"},
	"archive.level":                        {"0", "10"},
	"archive.idle.ms":                      {"-1"},
	"archive.lookback.nights":              {"0", "366"},
	"archive.checkpoint.bytes":             {"1", "2199023255553"},
	"archive.topic.retention.ms":           {"-5", "1000"},
}

func TestPackagerArchiveOutOfRangeRefused(t *testing.T) {
	for _, name := range sortedKeys(packagerArchiveOutOfRange) {
		for _, v := range packagerArchiveOutOfRange[name] {
			_, err := loadServeConfig("", settingFlags{name: v})
			if err == nil {
				t.Errorf("--set %s=%s accepted", name, v)
			} else if !strings.Contains(err.Error(), name) {
				t.Errorf("--set %s=%s: the error does not name the setting:\n%v", name, v, err)
			}
		}
	}
}
