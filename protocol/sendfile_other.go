//go:build !linux

package protocol

import "syscall"

// Elsewhere, file sections are copied through a buffer (writeChunks).
const sendfileSupported = false

func sendChunks(syscall.RawConn, []chunk) (int64, error) { return 0, errNotOSFile }
