package archive

import (
	"errors"
	"fmt"
	"time"
)

// SchemaLookup returns the writer schema (Avro JSON text) registered under
// a Confluent schema id, for archiving Confluent-framed topics as container
// files. An id that has no schema is an error wrapping ErrUnknownSchema (its
// messages are kept verbatim); any other error fails the run, to be retried.
type SchemaLookup func(id int32) ([]byte, error)

// ErrUnknownSchema means a schema id has no schema.
var ErrUnknownSchema = errors.New("archive: unknown schema id")

// Config is the archive inside `serve`: where tarballs go, when nights are
// built, and from which cluster.
type Config struct {
	// Enabled runs the scheduler; the listing is served either way.
	Enabled bool `yaml:"enabled"`
	// Dir holds public/ and partnership/ (serve's default: <data-dir>/archive).
	Dir string `yaml:"dir"`
	// Bootstrap is the cluster to consume from (serve: its own listener).
	Bootstrap []string `yaml:"bootstrap"`
	// Programs are the programids archived: 1 public, 2 partnership.
	Programs []int `yaml:"programs"`
	// Level is the gzip level, 1 (fast) to 9 (small).
	Level int `yaml:"level"`
	// Idle is how long a night's topic must be quiet, counted from the end
	// of the UTC night at the earliest, before it is archived.
	Idle time.Duration `yaml:"idle.ms"`
	// Lookback is how many past nights are checked and rebuilt if missing
	// or incomplete.
	Lookback int `yaml:"lookback.nights"`
	// Poll is how often topics are looked at.
	Poll time.Duration `yaml:"poll.ms"`
	// CheckpointBytes is the tar input between checkpoints of a run.
	CheckpointBytes int64 `yaml:"checkpoint.bytes"`
	// TopicRetention is how long a nightly topic stays after its archive
	// was built complete; then the scheduler deletes it. 0 or negative
	// keeps topics forever.
	TopicRetention time.Duration `yaml:"topic.retention.ms"`
	// Schemas finds the writer schema of Confluent-framed messages (serve:
	// the packager's 4.02 schema under packager.schema.id).
	Schemas SchemaLookup `yaml:"-"`
}

// DefaultConfig is the archive as `serve` runs it out of the box.
func DefaultConfig() Config {
	return Config{
		Enabled:         true,
		Dir:             "data/archive",
		Programs:        []int{int(Public), int(Partnership)},
		Level:           DefaultLevel,
		Idle:            30 * time.Minute,
		Lookback:        7,
		Poll:            time.Minute,
		CheckpointBytes: DefaultCheckpointBytes,
		TopicRetention:  7 * 24 * time.Hour, // ZTF keeps a night's topic about a week
	}
}

// Validate names every wrong setting at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(setting, format string, args ...any) {
		errs = append(errs, fmt.Errorf("archive.%s: "+format, append([]any{setting}, args...)...))
	}
	if c.Dir == "" {
		bad("dir", "empty")
	}
	if c.Enabled && len(c.Bootstrap) == 0 {
		bad("bootstrap", "no broker to consume from")
	}
	if len(c.Programs) == 0 && c.Enabled {
		bad("programs", "none")
	}
	seen := map[int]bool{}
	for _, p := range c.Programs {
		if !Program(p).Valid() {
			bad("programs", "%d is neither 1 (public) nor 2 (partnership)", p)
		}
		if seen[p] {
			bad("programs", "%d listed twice", p)
		}
		seen[p] = true
	}
	if c.Level < 1 || c.Level > 9 {
		bad("level", "%d not in 1-9", c.Level)
	}
	if c.Idle < 0 {
		bad("idle.ms", "negative (%s)", c.Idle)
	}
	if c.Lookback < 1 || c.Lookback > 365 {
		bad("lookback.nights", "%d not in 1-365", c.Lookback)
	}
	if c.Poll <= 0 {
		bad("poll.ms", "must be positive (%s)", c.Poll)
	}
	if c.CheckpointBytes < 1<<20 || c.CheckpointBytes > 1<<40 {
		bad("checkpoint.bytes", "%d is outside 1 MiB-1 TiB", c.CheckpointBytes)
	}
	if c.TopicRetention < -time.Millisecond {
		bad("topic.retention.ms", "%s is out of range (-1 or 0 keeps topics)", c.TopicRetention)
	}
	// A few milliseconds is most likely days or seconds given in the wrong
	// unit; it would take topics away from consumers as soon as archived.
	if c.TopicRetention > 0 && c.TopicRetention < time.Hour {
		bad("topic.retention.ms", "%s is under an hour (milliseconds: a week is 604800000; 0 keeps topics)", c.TopicRetention)
	}
	if len(errs) == 0 {
		return nil
	}
	return errors.Join(errs...)
}
