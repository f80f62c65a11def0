//go:build !linux

package log

import "os"

func fdatasync(f *os.File) error { return f.Sync() }

func syncRange(*os.File, int64, int64) {}
