package triggers

import (
	"context"
	"errors"
	"testing"
	"time"
)

// runDeadline is the deadline of the context Deadline gives the handler
// of d, with the listener's ackTimeout, and when the call was made.
func runDeadline(t *testing.T, ackTimeout time.Duration, d *Delivery) (deadline, start time.Time) {
	t.Helper()
	start = time.Now()
	ok := false
	err := Deadline(ackTimeout)(func(ctx context.Context, d *Delivery) error {
		deadline, ok = ctx.Deadline()
		return nil
	})(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatal("the handler's context has no deadline")
	}
	return deadline, start
}

// The handler's context ends at the listener's ack timeout; a message's
// JBXAcknowledgmentTimeout header (seconds) overrides it, unless it is
// not a positive number.
func TestDeadlineIsTheAckTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		header string
		want   time.Duration
	}{
		{"the listener's", "", 30 * time.Second},
		{"the message's", "2.5", 2500 * time.Millisecond},
		{"a garbled header", "soon", 30 * time.Second},
		{"a zero header", "0", 30 * time.Second},
		{"a negative header", "-4", 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Headers
			if tc.header != "" {
				h = Headers{HeaderAckTimeout, tc.header}
			}
			d := testDelivery(DeliveryConfig{Operations: []string{"A"}, Message: Message{Headers: h}})
			deadline, start := runDeadline(t, 30*time.Second, d)
			if got := deadline.Sub(start); got < tc.want || got > tc.want+time.Second {
				t.Fatalf("deadline %s after the start, want %s", got, tc.want)
			}
		})
	}
}

// A commit at or after the deadline is refused with ErrAckTimeout: the
// operation rolls back and nothing it sent is published.
func TestDeadlineRefusesALateCommit(t *testing.T) {
	t.Parallel()
	d := newTestDelivery("A")
	var commitErr error
	err := Deadline(50*time.Millisecond)(func(ctx context.Context, d *Delivery) error {
		a := d.Ops()[0]
		a.Start()
		_ = a.Send(ctx, "/queue/out", []byte("A"), nil)
		<-ctx.Done() // a run that overstays
		commitErr = a.Commit(context.WithoutCancel(ctx))
		return nil
	})(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(commitErr, ErrAckTimeout) {
		t.Fatalf("late commit: %v, want ErrAckTimeout", commitErr)
	}
	if failed, cause := d.Failed(); !failed || !errors.Is(cause, ErrAckTimeout) {
		t.Fatalf("failed %v, cause %v; want rolled back by the ack timeout", failed, cause)
	}
	if got := ackerOf(d).published(); len(got) != 0 {
		t.Fatalf("published %q after the deadline", got)
	}
}

// When one operation committed in time and the last one commits late, the
// late one rolls back with ErrAckTimeout and the message does not commit:
// it is left to Redeliver, whose retry copy names the late operation; the
// one that committed in time keeps its commit (its sends go with the copy).
func TestDeadlineLateLastCommitDoesNotCommitTheMessage(t *testing.T) {
	t.Parallel()
	d := newTestDelivery("A", "B")
	var commitErr error
	h := Chain(func(ctx context.Context, d *Delivery) error {
		a, b := d.Ops()[0], d.Ops()[1]
		a.Start()
		_ = a.Send(ctx, "/queue/out", []byte("A"), nil)
		if err := a.Commit(ctx); err != nil {
			t.Errorf("A in time: %v", err)
		}
		b.Start()
		<-ctx.Done()
		commitErr = b.Commit(context.WithoutCancel(ctx))
		return nil
	}, Redeliver(testPolicy("/queue/in", redeliveryPolicy), "/queue/in"), Deadline(50*time.Millisecond), Finish())
	if err := h(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(commitErr, ErrAckTimeout) {
		t.Fatalf("late commit of B: %v, want ErrAckTimeout", commitErr)
	}
	out := onlySettlement(t, d)
	if len(out) != 2 || string(out[0].Body) != "A" || out[1].Headers[HeaderOperations] != "B" {
		t.Fatalf("published %+v, want A's send and a retry copy naming B", out)
	}
}
