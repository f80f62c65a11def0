package main

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/broker"
	"github.com/ztfbroker/ztfbroker/packager"
)

// defaultMemoryBudget is 1 GiB: on the 4 GB VM a survey runs, the other
// 3 GB stay with the kernel, whose page cache serves tonight's topic to every
// consumer without a disk read.
const defaultMemoryBudget = 1 << 30

// minMemoryBudget keeps room for the Go heap once the caches are carved out.
const minMemoryBudget = 256 << 20

// memoryPlan divides memory.budget.bytes, the one number that sizes every
// cache of the process. Pebble's block caches and memtables are allocated
// outside the Go heap, so the heap's soft limit (GOMEMLIMIT) is what is left.
type memoryPlan struct {
	Budget int64
	// MetaCache is the broker's metadata block cache (a 128th); its
	// memtables are half of it each, and pebble holds two.
	MetaCache int64
	// HistoryCache (an eighth) and HistoryMemTable (a 32nd, two held) are
	// the packager's 30-day object history.
	HistoryCache, HistoryMemTable int64
	// GoHeap is the Go runtime's soft memory limit: request and fetch
	// buffers, group state, the packager's encoders.
	GoHeap int64
	// RequestBytes (an eighth) and ResponseBytes (an eighth) are carved
	// from GoHeap for what clients can make the listener hold: request
	// frames being read or handled (queued.max.request.bytes) and fetched
	// records waiting to be written (max.inflight.response.bytes). Each is
	// also passed by at most one frame or one first batch (protocol's
	// budget.go), which the rest of GoHeap covers.
	RequestBytes, ResponseBytes int64
}

func planMemory(budget int64) (memoryPlan, error) {
	if budget < minMemoryBudget {
		return memoryPlan{}, fmt.Errorf("memory.budget.bytes %d: must be at least %d (256 MiB)", budget, minMemoryBudget)
	}
	p := memoryPlan{
		Budget:          budget,
		MetaCache:       budget / 128,
		HistoryCache:    budget / 8,
		HistoryMemTable: budget / 32,
	}
	p.GoHeap = budget - p.MetaCache - 2*(p.MetaCache/2) - p.HistoryCache - 2*p.HistoryMemTable
	p.RequestBytes, p.ResponseBytes = budget/8, budget/8
	return p, nil
}

// fields describe the plan in the start log line.
func (p memoryPlan) fields() []zap.Field {
	return []zap.Field{
		zap.Int64("memory_budget_bytes", p.Budget),
		zap.Int64("go_heap_limit_bytes", p.GoHeap),
		zap.Int64("meta_cache_bytes", p.MetaCache),
		zap.Int64("history_cache_bytes", p.HistoryCache),
		zap.Int64("history_memtable_bytes", p.HistoryMemTable),
		zap.Int64("request_bytes", p.RequestBytes),
		zap.Int64("response_bytes", p.ResponseBytes),
	}
}

// The packages' own defaults are the shares of the default budget.
var _ = [1]struct{}{}[broker.DefaultMetaCacheBytes-defaultMemoryBudget/128]
var _ = [1]struct{}{}[packager.DefaultHistoryCacheBytes-defaultMemoryBudget/8]
var _ = [1]struct{}{}[packager.DefaultHistoryMemTableBytes-defaultMemoryBudget/32]
