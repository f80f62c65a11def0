package broker

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind (a
// retention loop, a log flusher, pebble) after its broker is closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
