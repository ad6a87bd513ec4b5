package triggers

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// A handler that panics fails its delivery instead of the listener: the
// operations it left pending roll back with the panic as their cause, one
// it had committed keeps its commit, and Finish returns nil (Redeliver and
// DeadLetter settle what rolled back).
func TestFinishPanicRollsBackPendingOperations(t *testing.T) {
	t.Parallel()
	d := newTestDelivery("A", "B")
	h := Finish()(func(ctx context.Context, d *Delivery) error {
		a := d.Ops()[0]
		a.Start()
		_ = a.Done(ctx, nil)
		panic("script engine exploded")
	})
	if err := h(context.Background(), d); err != nil {
		t.Fatalf("err %v, want nil", err)
	}
	failed, cause := d.Failed()
	if !failed || cause == nil || !strings.Contains(cause.Error(), "panicked: script engine exploded") {
		t.Fatalf("failed %v, cause %v; want B rolled back by the panic", failed, cause)
	}
	if d.Ops()[0].Pending() || d.Ops()[1].Pending() {
		t.Fatal("an operation is still pending")
	}
	if err := d.Ops()[0].Rollback(context.Background(), errBoom); !errors.Is(err, ErrSettled) {
		t.Fatalf("A can be rolled back (%v): the panic undid its commit", err)
	}
	if d.Settled() || len(ackerOf(d).published()) != 0 {
		t.Fatal("Finish settled a delivery with a rolled-back operation")
	}
}

// The operations a handler leaves pending roll back: with its error when
// it returns one, else because they were not run.
func TestFinishRollsBackWhatTheHandlerLeftPending(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"handler error", errBoom, errBoom},
		{"no error", nil, errNotRun},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDelivery("A")
			err := Finish()(func(ctx context.Context, d *Delivery) error { return tc.err })(context.Background(), d)
			if err != nil {
				t.Fatalf("err %v, want nil", err)
			}
			if failed, cause := d.Failed(); !failed || !errors.Is(cause, tc.want) {
				t.Fatalf("failed %v, cause %v; want a rollback with %v", failed, cause, tc.want)
			}
		})
	}
}

// When every operation committed, the delivery commits once: the last
// commit did it, and Finish does not settle again.
func TestFinishAllCommittedSettlesOnce(t *testing.T) {
	t.Parallel()
	d := newTestDelivery("A", "B")
	rec := new(settlements).observe(d, nil)
	if err := Finish()(runOps(sendsThenFails()))(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"/queue/out A", "/queue/out B"}}
	if got := ackerOf(d).published(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("settlements %q, want %q", got, want)
	}
	if len(rec.settling) != 1 || len(rec.settled) != 1 {
		t.Fatalf("observers told %d times before, %d after; want once each", len(rec.settling), len(rec.settled))
	}
}

// A delivery that owes nothing (its operations' bindings are off, or its
// copy names no bound operation) is committed by Finish: a plain ACK with
// nothing recorded.
func TestFinishCommitsADeliveryThatOwesNothing(t *testing.T) {
	t.Parallel()
	for name, ops := range map[string][]string{"bindings off": {"A", "B"}, "no operation due": nil} {
		t.Run(name, func(t *testing.T) {
			d := newTestDelivery(ops...)
			rec := new(settlements).observe(d, nil)
			h := Finish()(func(ctx context.Context, d *Delivery) error {
				for _, op := range d.Ops() {
					op.Skip()
				}
				return nil
			})
			if err := h(context.Background(), d); err != nil {
				t.Fatal(err)
			}
			if got := ackerOf(d).published(); len(got) != 1 || len(got[0]) != 0 {
				t.Fatalf("settlements %q, want one plain ACK", got)
			}
			if len(rec.settled) != 1 || len(rec.settled[0].Ops) != 0 {
				t.Fatalf("settled %+v, want once with no operation to record", rec.settled)
			}
		})
	}
}

// A delivery that owes nothing is acknowledged even after its ack
// deadline: the deadline refuses late commits of what operations did, and
// here nothing was done. Left unsettled, the listener would drop its
// connection and the broker would redeliver the message as if its agent
// had crashed.
func TestFinishCommitsADeliveryThatOwesNothingPastItsDeadline(t *testing.T) {
	t.Parallel()
	d := newTestDelivery("A")
	h := Chain(func(ctx context.Context, d *Delivery) error {
		<-ctx.Done() // a slow filter, say
		d.Ops()[0].Skip()
		return nil
	}, Redeliver(testPolicy("/queue/in", redeliveryPolicy), "/queue/in"), Deadline(20*time.Millisecond), Finish())
	if err := h(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if !d.Settled() {
		t.Fatal("the delivery was left unsettled")
	}
	if got := ackerOf(d).published(); len(got) != 1 || len(got[0]) != 0 {
		t.Fatalf("settlements %q, want one plain ACK", got)
	}
}
