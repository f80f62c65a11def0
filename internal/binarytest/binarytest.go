// Package binarytest builds the ztfbroker executable once for a package's
// end-to-end tests, so they run the program as a user would and can kill it
// with SIGKILL. Only tests import it.
package binarytest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Main is a TestMain: it builds the command in cmdDir (relative to the
// test's package, e.g. "../cmd/ztfbroker") into a temporary folder, sets
// *binary to its path, runs the tests and removes the folder. A failed
// build exits with its output.
func Main(m *testing.M, cmdDir string, binary *string) {
	dir, err := os.MkdirTemp("", "ztfbroker-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*binary = filepath.Join(dir, "ztfbroker")
	build := exec.Command("go", "build", "-o", *binary, cmdDir)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ztfbroker:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
