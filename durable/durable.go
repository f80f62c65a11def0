// Package durable writes small files so that a crash leaves either the old
// contents or the new, never a mix and never neither: write a temporary
// file, fsync it, rename it over the name, fsync the folder. It is the one
// home of that sequence, below package log and package archive, and
// imports nothing of the project.
//
// Each caller brings its file system: package log its crash-test seam
// (log.FS), the others the operating system's (OS).
package durable

import (
	"fmt"
	"os"
	"path/filepath"
)

// TempSuffix names the temporary file beside name while WriteFile writes
// it. A crash can leave one behind; its owner removes it on open, so the
// suffix is part of the on-disk format of every folder that uses WriteFile.
const TempSuffix = ".tmp"

// File is what WriteFile needs of an open file.
type File interface {
	WriteAt(p []byte, off int64) (int, error)
	// Sync makes the file's data durable.
	Sync() error
	Close() error
}

// FS is what WriteFile needs of a file system. It is generic in the file
// type so that a file system whose OpenFile returns a richer file (log.FS
// returns log.File) satisfies it as it stands.
type FS[F File] interface {
	// OpenFile opens name with os.OpenFile's flags.
	OpenFile(name string, flag int, perm os.FileMode) (F, error)
	Rename(oldname, newname string) error
	Remove(name string) error
	// SyncDir makes the entries of dir (creations, renames, removals)
	// durable.
	SyncDir(dir string) error
}

// WriteFile replaces name with data atomically and durably: a temporary
// file name+TempSuffix, fsync, rename over name, fsync the folder. When it
// returns nil the new contents survive a crash; when it fails, name holds
// the old contents or the new ones.
func WriteFile[F File](fsys FS[F], name string, data []byte, perm os.FileMode) error {
	tmp := name + TempSuffix
	f, err := fsys.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err = f.WriteAt(data, 0); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, name)
	}
	if err != nil {
		_ = fsys.Remove(tmp) // best effort: the owner's open removes leftovers too
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := fsys.SyncDir(filepath.Dir(name)); err != nil {
		return fmt.Errorf("write %s: sync dir: %w", name, err)
	}
	return nil
}

// OS is the operating system's file system.
type OS struct{}

func (OS) OpenFile(name string, flag int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(name, flag, perm)
}

func (OS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }
func (OS) Remove(name string) error             { return os.Remove(name) }
func (OS) SyncDir(dir string) error             { return SyncDir(dir) }

// SyncDir fsyncs the folder dir, making its entries (files created,
// renamed or removed in it) durable. A new name is not crash-safe until
// its folder has been synced, however often the file itself was.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
