package bench

import (
	"slices"
	"testing"
)

func TestPercentilesMs(t *testing.T) {
	// 1000 samples of 1..1000 ms, shuffled.
	lats := make([]int64, 1000)
	for i := range lats {
		lats[i] = int64((i*7919)%1000+1) * 1e6
	}
	got := percentilesMs(lats, 0.5, 0.99, 0.999, 1)
	if want := []float64{500, 990, 999, 1000}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if got := percentilesMs([]int64{3e6}, 0.5, 1); !slices.Equal(got, []float64{3, 3}) {
		t.Fatalf("one sample: %v", got)
	}
	if got := percentilesMs(nil, 0.5); got[0] != 0 {
		t.Fatalf("none: %v", got)
	}
}
