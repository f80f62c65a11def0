package log

import (
	"errors"
	"fmt"
	"syscall"
)

// Sentinel errors. Callers compare with errors.Is.
var (
	// ErrOffsetOutOfRange: the offset is below the log start offset or above
	// the high watermark (Kafka's OFFSET_OUT_OF_RANGE).
	ErrOffsetOutOfRange = errors.New("log: offset out of range")
	// ErrClosed: the log was closed.
	ErrClosed = errors.New("log: closed")
	// ErrReadOnly: an earlier fsync (or a write that could not be undone)
	// failed; the log refuses appends until Reopen (or the next Open)
	// recovers it. The error returned by appends wraps both ErrReadOnly and
	// the original failure. A write refused for a full disk or a lack of
	// file descriptors is not sticky: see Transient.
	ErrReadOnly = errors.New("log: read-only after failed write or fsync")
	// ErrInvalidBatch wraps every reason an incoming batch is refused
	// (Kafka's CORRUPT_MESSAGE / INVALID_RECORD).
	ErrInvalidBatch = errors.New("log: invalid record batch")
)

// Transient reports a failure that says nothing about the bytes already
// stored, only that this write could not happen now: the disk or the quota
// is full (ENOSPC, EDQUOT) or the process or the system is out of file
// descriptors (EMFILE, ENFILE). A write that fails so, before any of its
// bytes are kept, leaves the log writable; the same errno from an fsync
// does not (an fsync that failed may have dropped pages, whatever it says).
func Transient(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// MagicError refuses a batch whose magic byte is not 2 (the v2 format).
type MagicError struct{ Magic int8 }

func (e *MagicError) Error() string {
	return fmt.Sprintf("log: record batch magic %d, only 2 is supported", e.Magic)
}

// Unwrap lets errors.Is(err, ErrInvalidBatch) hold for a wrong magic too.
func (e *MagicError) Unwrap() error { return ErrInvalidBatch }

// CorruptionError reports stored bytes that are not what was written: a
// batch whose CRC32C, framing or offset does not check out, or offsets no
// segment holds (a sealed segment missing or cut short: errMissingOffsets).
// Segment is the file path and Offset the byte position in it where the
// damage was found, -1 when the file is missing.
type CorruptionError struct {
	Segment string
	Offset  int64
	Err     error
}

func (e *CorruptionError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("log: corruption in %s: %v", e.Segment, e.Err)
	}
	return fmt.Sprintf("log: corruption in %s at byte %d: %v", e.Segment, e.Offset, e.Err)
}

func (e *CorruptionError) Unwrap() error { return e.Err }

// Reasons carried by CorruptionError.Err and by ErrInvalidBatch wrappers.
var (
	errCRC         = errors.New("crc32c mismatch")
	errShortBatch  = errors.New("batch shorter than its header")
	errBatchLength = errors.New("batch length out of bounds")
	errBadOffset   = errors.New("batch base offset does not follow its predecessor")
	errBadEpoch    = errors.New("partition leader epoch out of range")
	errBadDelta    = errors.New("negative last offset delta")
	// errMissingOffsets: offsets below the log end that no segment holds.
	errMissingOffsets = errors.New("offsets missing")
)

// missingOffsets reports offsets from..to (to < 0: from there on) that no
// segment holds; segment is the file that should hold them and pos where
// its bytes stop (-1: the file is missing).
func missingOffsets(segment string, pos, from, to int64, why string) *CorruptionError {
	lost := fmt.Sprintf("%d to %d", from, to)
	if to < 0 {
		lost = fmt.Sprintf("%d on", from)
	}
	return &CorruptionError{Segment: segment, Offset: pos, Err: fmt.Errorf("%w: %s (%s)", errMissingOffsets, lost, why)}
}
