package archive

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// IsTerminal reports whether w is a terminal, the only place a progress bar
// belongs.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progress draws one line, at most five times a second.
type progress struct {
	w           io.Writer
	name        string
	total, done int64
	bytes       int64
	start, last time.Time
	drawn       bool
}

func newProgress(w io.Writer, name string, total, done int64) *progress {
	return &progress{w: w, name: name, total: total, done: done, start: time.Now()}
}

func (p *progress) add(msgs, bytes int64) {
	p.done += msgs
	p.bytes += bytes
	if now := time.Now(); now.Sub(p.last) >= 200*time.Millisecond {
		p.last = now
		p.draw(now)
	}
}

func (p *progress) draw(now time.Time) {
	const width = 30
	frac := 1.0
	if p.total > 0 {
		frac = float64(p.done) / float64(p.total)
	}
	fill := int(frac * width)
	secs := now.Sub(p.start).Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(p.bytes) / secs / 1e6
	}
	fmt.Fprintf(p.w, "\r%s [%s%s] %3.0f%% %d/%d alerts %.1f MB/s ",
		p.name, strings.Repeat("#", fill), strings.Repeat(".", width-fill), frac*100, p.done, p.total, rate)
	p.drawn = true
}

func (p *progress) finish() {
	p.draw(time.Now())
	fmt.Fprintln(p.w)
}

func (p *progress) stop() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}
