package archive

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The hidden files of a run, next to the final name (see the package doc).
type runPaths struct {
	dir, final, part, sums, ckpt, meta, lock string
}

func pathsFor(dir, name string) runPaths {
	h := filepath.Join(dir, "."+name)
	return runPaths{
		dir:   dir,
		final: filepath.Join(dir, name),
		part:  h + ".part",
		sums:  h + ".sums",
		ckpt:  h + ".ckpt",
		meta:  h + ".json",
		lock:  h + ".lock",
	}
}

// PartitionRange is the offsets of one partition a run archives: [Start, End).
type PartitionRange struct {
	Partition int32 `json:"partition"`
	Start     int64 `json:"start"`
	End       int64 `json:"end"`
}

// checkpoint is the .ckpt file: where a killed run continues from. Its
// fields are part of the on-disk format; Version changes with them.
type checkpoint struct {
	Version    int              `json:"version"`
	Topic      string           `json:"topic"`
	Level      int              `json:"level"`
	Ranges     []PartitionRange `json:"ranges"`
	Next       []int64          `json:"next"` // next offset per range
	PartSize   int64            `json:"part_size"`
	SumsSize   int64            `json:"sums_size"`
	Gzip       gzState          `json:"gzip"`
	Members    int64            `json:"members"`
	NoCandid   int64            `json:"no_candid"`
	MaxTime    int64            `json:"max_time"` // newest record, Unix seconds
	Checkpoint int64            `json:"checkpoint_bytes"`
}

// checkpointVersion 2: negative candids are named n<|candid|> and Confluent
// frames are archived as container files, so a run must not resume a
// version 1 checkpoint (its members would follow the old rules).
const checkpointVersion = 2

// Manifest is the .json file beside a finished archive: what it holds.
type Manifest struct {
	Topic    string           `json:"topic"`
	Ranges   []PartitionRange `json:"ranges"`
	Members  int64            `json:"members"`
	NoCandid int64            `json:"no_candid"`
	Size     int64            `json:"size"`
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func removeIfExists(paths ...string) error {
	var errs []error
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// lockRun keeps two runs (serve's scheduler and a manual one, say) off the
// same archive. The lock goes with the process, so a killed run leaves none.
func lockRun(p runPaths) (unlock func(), err error) {
	f, err := os.OpenFile(p.lock, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrBusy, p.final)
		}
		return nil, fmt.Errorf("lock %s: %w", p.lock, err)
	}
	return func() { _ = f.Close() }, nil
}
