package cluster

import (
	"slices"
	"sync"
)

// lostSignal is the lost state of a lease: fired once, it closes the
// channel Lost returns and runs the functions AfterLost registered. The
// zero value is ready to use; the channel is made only if someone asks.
type lostSignal struct {
	mu    sync.Mutex
	fired bool
	ch    chan struct{}
	fns   []*afterLost
}

type afterLost struct{ f func() }

// fire marks the lease lost. Idempotent.
func (s *lostSignal) fire() {
	s.mu.Lock()
	if s.fired {
		s.mu.Unlock()
		return
	}
	s.fired = true
	if s.ch != nil {
		close(s.ch)
	}
	fns := s.fns
	s.fns = nil
	s.mu.Unlock()
	for _, a := range fns {
		go a.f()
	}
}

// done is Lease.Lost.
func (s *lostSignal) done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
		if s.fired {
			close(s.ch)
		}
	}
	return s.ch
}

// after is Lease.AfterLost.
func (s *lostSignal) after(f func()) (stop func() bool) {
	a := &afterLost{f: f}
	s.mu.Lock()
	if s.fired {
		s.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	s.fns = append(s.fns, a)
	s.mu.Unlock()
	return func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		i := slices.Index(s.fns, a)
		if i < 0 {
			return false // fired, or stopped before
		}
		s.fns = slices.Delete(s.fns, i, i+1)
		return true
	}
}
