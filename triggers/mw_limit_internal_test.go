package triggers

import (
	"context"
	"testing"
	"time"
)

// A delivery holds one of the agent's slots while the handler runs it,
// and gives it back when the handler returns.
func TestLimitHoldsASlotWhileTheHandlerRuns(t *testing.T) {
	t.Parallel()
	slots := NewSlots(1)
	inFlight := -1
	h := Limit(slots)(func(ctx context.Context, d *Delivery) error {
		inFlight = slots.InFlight()
		if slots.TryAcquire() {
			t.Error("a second slot was free while the handler ran")
		}
		return nil
	})
	if err := h(context.Background(), newTestDelivery("A")); err != nil {
		t.Fatal(err)
	}
	if inFlight != 1 {
		t.Fatalf("slots held while the handler ran: %d, want 1", inFlight)
	}
	if got := slots.InFlight(); got != 0 {
		t.Fatalf("slots held after the handler returned: %d, want 0", got)
	}
}

// When ctx ends while every slot is taken, Limit returns without running
// or settling the delivery: the disconnect gives it back.
func TestLimitStoppingWhileWaitingLeavesItUnsettled(t *testing.T) {
	t.Parallel()
	slots := NewSlots(1)
	if !slots.TryAcquire() {
		t.Fatal("no free slot")
	}
	ctx, cancel := context.WithCancel(context.Background())
	stop := time.AfterFunc(50*time.Millisecond, cancel)
	defer stop.Stop()
	ran := false
	h := Limit(slots)(func(ctx context.Context, d *Delivery) error {
		ran = true
		return nil
	})
	d := newTestDelivery("A")
	if err := h(ctx, d); err != nil {
		t.Fatalf("stopping returned %v, want nil", err)
	}
	if ran || d.Settled() || len(ackerOf(d).published()) != 0 {
		t.Fatalf("ran %v, settled %v; want neither", ran, d.Settled())
	}
	if got := slots.InFlight(); got != 1 {
		t.Fatalf("slots held: %d, want only the one taken before", got)
	}
}

// nil slots are unbounded: every delivery runs at once.
func TestLimitNilSlotsIsUnbounded(t *testing.T) {
	t.Parallel()
	ran := false
	h := Limit(nil)(func(ctx context.Context, d *Delivery) error {
		ran = true
		return nil
	})
	if err := h(context.Background(), newTestDelivery("A")); err != nil || !ran {
		t.Fatalf("err %v, ran %v; want the handler run", err, ran)
	}
}
