package protocol

import (
	"sync"
	"time"
)

// Memory a client can make the listener hold is bounded by two budgets of
// bytes shared by every connection, so that what clients send cannot grow
// the process past memory.budget.bytes:
//
//   - request frames (queued.max.request.bytes, Kafka's name): the buffer of
//     every frame being read or handled. A frame's buffer grows as its bytes
//     arrive rather than at the size it announces, and a frame waits (its
//     socket is not read) while the budget is spent. Frames of at most
//     smallFrameBytes may use the whole budget; bigger ones leave the last
//     quarter to them, so that stalled 90 MiB frames cannot starve a
//     producer's ordinary requests. One big frame at a time may go past that
//     ceiling (the first to need it), so a frame as large as
//     socket.request.max.bytes always completes, even with a budget smaller
//     than it, once the client sends it.
//   - fetched records waiting to be written (max.inflight.response.bytes):
//     Fetch shrinks its max bytes to what is free. Connections with no answer
//     queued may use the whole budget; the others leave the last quarter to
//     them, so that clients that never read their answers cannot take it all
//     from those that do.
//
// Per connection, the read loop stops taking requests while the answers
// queued for it exceed connection.max.inflight.response.bytes: a client that
// does not read stops being served and, after
// socket.response.write.timeout.ms, is disconnected.

// smallFrameBytes is the largest request read into a buffer of its
// announced size at once; a larger one grows its buffer as bytes arrive.
const smallFrameBytes = 1 << 20

// byteBudget is a counting semaphore of bytes.
type byteBudget struct {
	mu    sync.Mutex
	total int64
	used  int64
	// large is what big request frames hold (frames only), and over the
	// one frame allowed past their ceiling.
	large int64
	over  *conn
	wake  chan struct{} // closed and replaced whenever bytes are given back
}

func newByteBudget(total int64) *byteBudget {
	return &byteBudget{total: total, wake: make(chan struct{})}
}

// reserve is the last quarter of the budget, kept for small frames and for
// connections with no answer queued.
func (b *byteBudget) reserve() int64 { return b.total / 4 }

// giveLocked returns n bytes and wakes every waiter.
func (b *byteBudget) giveLocked(n int64) {
	if n == 0 {
		return
	}
	b.used -= n
	close(b.wake)
	b.wake = make(chan struct{})
}

// give returns n bytes.
func (b *byteBudget) give(n int64) {
	b.mu.Lock()
	b.giveLocked(n)
	b.mu.Unlock()
}

// Used reports the bytes held now.
func (b *byteBudget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// wait blocks until bytes are given back, reporting false at the deadline
// (zero: none), when done closes or when dead closes.
func (b *byteBudget) wait(wake <-chan struct{}, deadline time.Time, done, dead <-chan struct{}) bool {
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		d := time.Until(deadline)
		if d <= 0 {
			return false
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-wake:
		return true
	case <-timeout:
	case <-done:
	case <-dead:
	}
	return false
}

// takeUpTo takes what is free of n, at most; without the reserve the last
// quarter is left alone.
func (b *byteBudget) takeUpTo(n int64, useReserve bool) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	limit := b.total
	if !useReserve {
		limit -= b.reserve()
	}
	got := min(n, limit-b.used)
	if got <= 0 {
		return 0
	}
	b.used += got
	return got
}

// take takes n bytes, waiting until they are free or, when even the whole
// budget is too small for n, until nothing else is held. It reports false
// when the deadline passes first or done or dead closes.
func (b *byteBudget) take(n int64, useReserve bool, deadline time.Time, done, dead <-chan struct{}) bool {
	for {
		b.mu.Lock()
		limit := b.total
		if !useReserve {
			limit -= b.reserve()
		}
		if b.used+n <= limit || b.used == 0 {
			b.used += n
			b.mu.Unlock()
			return true
		}
		wake := b.wake
		b.mu.Unlock()
		if !b.wait(wake, deadline, done, dead) {
			return false
		}
	}
}

// growFrame takes n more bytes for c's request frame of the given size
// (see the budgets above), waiting until the deadline.
func (b *byteBudget) growFrame(c *conn, size int, n int64, deadline time.Time) bool {
	for {
		b.mu.Lock()
		ok := b.used+n <= b.total
		if size <= smallFrameBytes {
			// The reserve stays theirs even when the frame allowed
			// past the ceiling takes the budget past its total.
			ok = ok || b.used-b.large+n <= b.reserve()
		} else {
			ok = ok && b.large+n <= b.total-b.reserve()
			if !ok && (b.over == nil || b.over == c) {
				b.over, ok = c, true
			}
			if ok {
				b.large += n
			}
		}
		if ok {
			b.used += n
			b.mu.Unlock()
			return true
		}
		wake := b.wake
		b.mu.Unlock()
		if !b.wait(wake, deadline, c.s.done, c.ctx.Done()) {
			return false
		}
	}
}

// releaseFrame gives back what c's request frame held.
func (b *byteBudget) releaseFrame(c *conn, size int, held int64) {
	b.mu.Lock()
	if size > smallFrameBytes {
		b.large -= held
	}
	wasOver := b.over == c
	if wasOver {
		b.over = nil
	}
	b.giveLocked(held)
	if held == 0 && wasOver {
		// Another frame may now go past the ceiling.
		close(b.wake)
		b.wake = make(chan struct{})
	}
	b.mu.Unlock()
}
