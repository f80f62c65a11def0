package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ztfbroker/ztfbroker/broker"
	"github.com/ztfbroker/ztfbroker/log"
)

// runVerify checks every partition folder under the data directory with
// log.Verify and names each damaged one; it fails if any is damaged. A data
// directory that a running broker holds (its lock) is refused unless --live,
// which reads each partition up to its last complete batch and reports a
// batch still being written at the end of the active segment as in flight.
func runVerify(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "./data", "data directory of a stopped broker")
	live := fs.Bool("live", false, "verify the data directory of a running broker: read up to each partition's last complete batch")
	if err := fs.Parse(args); err != nil {
		return err
	}
	entries, err := os.ReadDir(*dataDir)
	if err != nil {
		return fmt.Errorf("read data directory: %w", err)
	}
	// The shared lock keeps a broker from starting under the check.
	unlock, err := broker.LockDataDir(*dataDir, false)
	running := errors.Is(err, broker.ErrDataDirLocked)
	switch {
	case running && !*live:
		return fmt.Errorf("%w: its active segments are being written, so a torn tail would look like damage; "+
			"stop the broker first, or pass --live to read each partition up to its last complete batch", err)
	case err != nil && !running:
		return err
	case err == nil:
		defer unlock()
	}
	var damaged []error
	checked, inFlight := 0, 0
	for _, e := range entries {
		if _, _, ok := broker.ParsePartitionDir(e.Name()); !e.IsDir() || !ok {
			continue
		}
		dir := filepath.Join(*dataDir, e.Name())
		checked++
		var in *log.InFlight
		if running {
			in, err = log.VerifyLive(dir)
		} else {
			err = log.Verify(dir)
		}
		if errors.Is(err, os.ErrNotExist) && running {
			checked-- // deleted while being checked
			continue
		}
		if err != nil {
			fmt.Fprintf(stdout, "DAMAGED %s: %v\n", e.Name(), err)
			damaged = append(damaged, fmt.Errorf("%s: %w", e.Name(), err))
			continue
		}
		if in != nil {
			inFlight++
			fmt.Fprintf(stdout, "ok      %s (in flight: %d bytes at %s:%d, being written)\n", e.Name(), in.Bytes, filepath.Base(in.Segment), in.Position)
			continue
		}
		fmt.Fprintf(stdout, "ok      %s\n", e.Name())
	}
	fmt.Fprintf(stdout, "%d partitions checked, %d damaged", checked, len(damaged))
	if running {
		fmt.Fprintf(stdout, " (live: up to each last complete batch, %d in flight)", inFlight)
	}
	fmt.Fprintln(stdout)
	if len(damaged) > 0 {
		return errors.Join(damaged...)
	}
	return nil
}
