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
// log.Verify and names each damaged one; it fails if any is damaged.
func runVerify(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "./data", "data directory of the broker (stopped or running)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	entries, err := os.ReadDir(*dataDir)
	if err != nil {
		return fmt.Errorf("read data directory: %w", err)
	}
	var damaged []error
	checked := 0
	for _, e := range entries {
		if _, _, ok := broker.ParsePartitionDir(e.Name()); !e.IsDir() || !ok {
			continue
		}
		dir := filepath.Join(*dataDir, e.Name())
		checked++
		if err := log.Verify(dir); err != nil {
			fmt.Fprintf(stdout, "DAMAGED %s: %v\n", e.Name(), err)
			damaged = append(damaged, fmt.Errorf("%s: %w", e.Name(), err))
			continue
		}
		fmt.Fprintf(stdout, "ok      %s\n", e.Name())
	}
	fmt.Fprintf(stdout, "%d partitions checked, %d damaged\n", checked, len(damaged))
	if len(damaged) > 0 {
		return errors.Join(damaged...)
	}
	return nil
}
