package triggers

import (
	"context"
	"fmt"
)

// Slots is the agent-wide pool of worker slots shared by webhooks and
// listeners: a run holds one slot while it executes. It is safe for
// concurrent use. A nil *Slots means "unbounded": every method succeeds and
// Free reports a large number.
type Slots struct {
	ch chan struct{}
}

// NewSlots returns a pool of n slots; n < 1 is treated as 1.
func NewSlots(n int) *Slots {
	if n < 1 {
		n = 1
	}
	return &Slots{ch: make(chan struct{}, n)}
}

// Acquire takes a slot, blocking until one is free or ctx ends.
func (s *Slots) Acquire(ctx context.Context) error {
	if s == nil {
		return nil
	}
	select {
	case s.ch <- struct{}{}:
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
	select {
	case s.ch <- struct{}{}:
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
