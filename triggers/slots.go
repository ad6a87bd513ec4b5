package triggers

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// Slots is the agent-wide pool of worker slots shared by webhooks and
// listeners: a run holds one slot while it executes. It is safe for
// concurrent use. A nil *Slots means "unbounded": every method succeeds and
// Free reports a large number.
type Slots struct {
	ch chan struct{}
	// seenFree is the last time (Unix ns) a slot was known free: stamped
	// when a slot is taken or given back, and before taking one seen free,
	// so that BusySince never reports a time before the last free moment
	// by more than a goroutine's wake-up.
	seenFree atomic.Int64
}

// NewSlots returns a pool of n slots; n < 1 is treated as 1.
func NewSlots(n int) *Slots {
	if n < 1 {
		n = 1
	}
	s := &Slots{ch: make(chan struct{}, n)}
	s.stamp()
	return s
}

func (s *Slots) stamp() { s.seenFree.Store(time.Now().UnixNano()) }

// Acquire takes a slot, blocking until one is free or ctx ends.
func (s *Slots) Acquire(ctx context.Context) error {
	if s == nil {
		return nil
	}
	if s.TryAcquire() {
		return nil
	}
	// ctx.Done is reached only when the pool is full: a context makes its
	// Done channel on first use, which a free slot need not pay for.
	select {
	case s.ch <- struct{}{}:
		s.stamp()
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for a worker slot: %w", ctx.Err())
	}
}

// TryAcquire takes a slot if one is free right now. It never blocks.
func (s *Slots) TryAcquire() bool {
	if s == nil {
		return true
	}
	if s.Free() > 0 {
		s.stamp()
	}
	select {
	case s.ch <- struct{}{}:
		s.stamp()
		return true
	default:
		return false
	}
}

// Release gives back a slot taken by Acquire or TryAcquire. Releasing more
// than was taken is a no-op.
func (s *Slots) Release() {
	if s == nil {
		return
	}
	s.stamp()
	select {
	case <-s.ch:
	default:
	}
}

// Free is the number of slots not held at the moment of the call.
func (s *Slots) Free() int {
	if s == nil {
		return 1 << 20
	}
	return cap(s.ch) - len(s.ch)
}

// BusySince reports since when every slot has been held: ok is false when
// a slot is free at the moment of the call. It never blocks. Under a
// stream of short runs the time stays recent, as each one frees its slot.
func (s *Slots) BusySince() (since time.Time, ok bool) {
	if s == nil || s.Free() > 0 {
		return time.Time{}, false
	}
	return time.Unix(0, s.seenFree.Load()), true
}

// Load is how busy an agent is, from 0 (idle) to 1 (full): the larger of
// its busy workers' share and its runs in progress' share of max_inflight.
// A capacity of 0 is not counted (all 0: full).
func Load(busyWorkers, workers, inflight, maxInflight int) float64 {
	l, counted := 0.0, false
	for _, p := range [][2]int{{busyWorkers, workers}, {inflight, maxInflight}} {
		if p[1] > 0 {
			l, counted = max(l, float64(p[0])/float64(p[1])), true
		}
	}
	if !counted {
		return 1
	}
	return l
}

// InFlight is the number of slots held at the moment of the call.
func (s *Slots) InFlight() int {
	if s == nil {
		return 0
	}
	return len(s.ch)
}

// Capacity is the pool size.
func (s *Slots) Capacity() int {
	if s == nil {
		return 1 << 20
	}
	return cap(s.ch)
}
