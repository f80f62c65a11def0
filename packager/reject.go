package packager

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"
)

// Reject is an input refused: which exposure, which candidate (its candid, or
// line number, or "-" for a whole file), which field, and why. The input is
// kept in the reject folder, never silently dropped.
type Reject struct {
	Exposure  string
	Candidate string
	Field     string
	Reason    string
	// Name and Input: the refused bytes (a JSON line, a file) and the file
	// name to keep them under.
	Name  string
	Input []byte
	// Files are further inputs to keep alongside (the candidate's cutouts).
	Files map[string][]byte
}

func (r Reject) Error() string {
	return fmt.Sprintf("exposure %s candidate %s field %s: %s", r.Exposure, r.Candidate, r.Field, r.Reason)
}

// reject logs, counts and writes r to the reject folder (WriteReject).
func (p *Packager) reject(r Reject) {
	p.m.rejected.WithLabelValues(r.Field).Inc()
	p.log.Warn("input refused", zap.String("exposure", r.Exposure), zap.String("candidate", r.Candidate),
		zap.String("field", r.Field), zap.String("reason", r.Reason))
	if err := WriteReject(p.cfg.RejectDir, r); err != nil {
		p.log.Error("reject not written", zap.String("exposure", r.Exposure), zap.Error(err))
	}
}

// WriteReject writes r to <dir>/<exposure>/: the input and files under their
// names and <candidate>.reason holding the message.
func WriteReject(dir string, r Reject) error {
	dir = filepath.Join(dir, safeName(r.Exposure))
	err := os.MkdirAll(dir, 0o755)
	base := safeName(r.Candidate)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, base+".reason"), []byte(r.Error()+"\n"), 0o644)
	}
	if err == nil && r.Input != nil {
		name := r.Name
		if name == "" {
			name = base + ".input"
		}
		err = os.WriteFile(filepath.Join(dir, safeName(name)), r.Input, 0o644)
	}
	for name, b := range r.Files {
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, safeName(name)), b, 0o644)
		}
	}
	return err
}

// safeName keeps a name to one path element.
func safeName(s string) string {
	s = strings.Trim(s, "/")
	s = strings.NewReplacer("/", "_", "\\", "_", "..", "_").Replace(s)
	if s == "" || s == "." {
		return "_"
	}
	return s
}
