package triggers_test

import (
	"context"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/triggers"
)

// BusySince tells since when every slot has been held: not while one is
// free, from the taking of the last free one, and from the latest taking
// when runs come and go (so a busy agent of short runs is not stuck).
func TestSlotsBusySince(t *testing.T) {
	s := triggers.NewSlots(2)
	if _, busy := s.BusySince(); busy {
		t.Fatal("an idle pool reports busy")
	}
	if !s.TryAcquire() {
		t.Fatal("no slot in an idle pool")
	}
	if _, busy := s.BusySince(); busy {
		t.Fatal("a pool with a free slot reports busy")
	}
	before := time.Now()
	if err := s.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	since, busy := s.BusySince()
	if !busy || since.Before(before) || since.After(time.Now()) {
		t.Fatalf("full pool: busy %v since %v, want busy since the last taking (after %v)", busy, since, before)
	}
	for range 3 { // a stream of short runs through one slot
		s.Release()
		mark := time.Now()
		if !s.TryAcquire() {
			t.Fatal("the released slot cannot be taken")
		}
		if since, _ := s.BusySince(); since.Before(mark) {
			t.Fatalf("busy since %v, before the slot was last free (%v)", since, mark)
		}
	}
	s.Release()
	if _, busy := s.BusySince(); busy {
		t.Fatal("a pool with a released slot reports busy")
	}
	var none *triggers.Slots
	if _, busy := none.BusySince(); busy {
		t.Fatal("an unbounded (nil) pool reports busy")
	}
}

// A waiter that gets a slot another run gave back counts from that moment,
// not from when the pool first filled.
func TestSlotsBusySinceAfterAWaiterTakesOver(t *testing.T) {
	s := triggers.NewSlots(1)
	if err := s.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	took := make(chan struct{})
	go func() { // owner: this test; ends once it has the slot
		if err := s.Acquire(context.Background()); err == nil {
			close(took)
		}
	}()
	time.Sleep(time.Millisecond) // most often the waiter blocks first; either order must hold
	mark := time.Now()
	s.Release()
	<-took
	since, busy := s.BusySince()
	if !busy || since.Before(mark) {
		t.Fatalf("busy %v since %v; want busy since the hand-over (after %v)", busy, since, mark)
	}
}
