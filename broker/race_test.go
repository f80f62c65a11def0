//go:build race

package broker

// Under the race detector sync.Pool drops what it is given at random, so
// the pools inside the decoders (lz4's blocks) allocate again.
func init() { raceDetector = true }
