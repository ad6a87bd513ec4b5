package triggers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/opsrunner/opsrunner/cluster"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// inDoubtCase is listener p/l's chain around operations that each send
// one message, and the deliveries of one input (dedup key order-7) that
// go through it: the original, broker message-id ID:1, and copies.
type inDoubtCase struct {
	t     *testing.T
	coord *cluster.Local
	h     Handler
	ran   []string
}

func newInDoubtCase(t *testing.T) *inDoubtCase {
	c := &inDoubtCase{t: t, coord: cluster.NewLocal("agent-1")}
	pol := testPolicy("/queue/in", scripts.Redelivery{MaxRedeliveries: 5})
	run := runOps(func(ctx context.Context, op *OpDelivery) error {
		c.ran = append(c.ran, op.Name())
		return sendsThenFails()(ctx, op)
	})
	c.h = Chain(run, Dedup(testMarkers(c.coord)), Redeliver(pol, "/queue/in"), Finish())
	return c
}

// deliver hands the chain a copy of the input whose broker message-id is
// brokerID, due to A and B; inDoubt makes its commit go out unconfirmed.
// It returns the delivery, what its observers heard, and the chain's error.
func (c *inDoubtCase) deliver(brokerID string, inDoubt bool) (*Delivery, *settlements, error) {
	d := testDelivery(DeliveryConfig{Key: "order-7", BrokerID: brokerID, Operations: []string{"A", "B"}})
	if inDoubt {
		ackerOf(d).fail = fmt.Errorf("commit transaction: %w", ErrCommitInDoubt)
	}
	rec := new(settlements).observe(d, nil)
	c.ran = nil
	err := c.h(context.Background(), d)
	return d, rec, err
}

func (c *inDoubtCase) marker(op string) cluster.Marker {
	c.t.Helper()
	m, err := c.coord.Marker(context.Background(), "processed:p/l:"+op+":order-7")
	if err != nil {
		c.t.Fatal(err)
	}
	return m
}

// A commit whose receipt never came is recorded rolled back with the
// in-doubt cause, publishes nothing more (no retry copy: the broker alone
// decides by giving the message back or not), and leaves in-doubt markers
// naming the broker message-id. Another copy of the same input (another
// broker message-id, same dedup key) is then skipped as a duplicate; the
// original coming back runs again, and its confirmed commit writes the
// ordinary markers.
func TestInDoubtCommitSkipsCopiesAndRerunsTheOriginal(t *testing.T) {
	t.Parallel()
	c := newInDoubtCase(t)

	d, rec, err := c.deliver("ID:1", true)
	if !errors.Is(err, ErrCommitInDoubt) {
		t.Fatalf("chain error %v, want ErrCommitInDoubt (the connection must go)", err)
	}
	if d.Settled() || len(rec.settled) != 0 {
		t.Fatalf("settled %v (%d confirmations) after a commit in doubt", d.Settled(), len(rec.settled))
	}
	if got := ackerOf(d).published(); len(got) != 0 {
		t.Fatalf("published %q after the commit in doubt, want nothing", got)
	}
	last := rec.settling[len(rec.settling)-1]
	for _, o := range last.Ops {
		if o.Outcome != store.OutcomeRolledBack || !errors.Is(o.Err, ErrCommitInDoubt) {
			t.Fatalf("recorded %s %s (%v), want rolled back: commit in doubt", o.Operation, o.Outcome, o.Err)
		}
	}
	for _, op := range []string{"A", "B"} {
		if m := c.marker(op); m != (cluster.Marker{InDoubt: "ID:1"}) {
			t.Fatalf("marker of %s = %+v, want in doubt with ID:1", op, m)
		}
	}

	d, rec, err = c.deliver("ID:2", false) // the producer's resent copy
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A " + store.OutcomeSkippedDuplicate, "B " + store.OutcomeSkippedDuplicate}
	if len(c.ran) != 0 || len(rec.settled) != 1 || !slices.Equal(opOutcomes(rec.settled[0]), want) {
		t.Fatalf("copy ID:2 ran %q, settled %+v; want skipped as a duplicate", c.ran, rec.settled)
	}
	if got := ackerOf(d).published(); len(got) != 1 || len(got[0]) != 0 {
		t.Fatalf("copy ID:2 published %q, want one plain ACK", got)
	}

	_, rec, err = c.deliver("ID:1", false) // the original, given back
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"A " + store.OutcomeCommitted, "B " + store.OutcomeCommitted}
	if !slices.Equal(c.ran, []string{"A", "B"}) || len(rec.settled) != 1 || !slices.Equal(opOutcomes(rec.settled[0]), want) {
		t.Fatalf("original ID:1 given back ran %q, settled %+v; want both run and committed", c.ran, rec.settled)
	}
	for _, op := range []string{"A", "B"} {
		if m := c.marker(op); m != (cluster.Marker{Processed: true}) {
			t.Fatalf("marker of %s = %+v after the confirmed commit, want processed", op, m)
		}
	}
	if _, _, err = c.deliver("ID:1", false); err != nil || len(c.ran) != 0 {
		t.Fatalf("ID:1 once more ran %q (err %v), want a skipped duplicate", c.ran, err)
	}
}

// Where the broker's message-id is not stable across redeliveries
// (BrokerID ""), the original and a copy cannot be told apart: an in-doubt
// commit leaves no marker, and a delivery without a broker id runs even
// past an in-doubt marker (a duplicate rather than a loss).
func TestInDoubtCommitWithoutStableBrokerID(t *testing.T) {
	t.Parallel()
	c := newInDoubtCase(t)
	if _, _, err := c.deliver("", true); !errors.Is(err, ErrCommitInDoubt) {
		t.Fatalf("chain error %v, want ErrCommitInDoubt", err)
	}
	if m := c.marker("A"); m != (cluster.Marker{}) {
		t.Fatalf("marker %+v without a broker id, want none", m)
	}
	if err := c.coord.MarkInDoubt(context.Background(), "processed:p/l:A:order-7", "ID:1", 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.deliver("", false); err != nil || !slices.Equal(c.ran, []string{"A", "B"}) {
		t.Fatalf("ran %q (err %v), want A and B", c.ran, err)
	}
}

// skips says which markers make a delivery a duplicate.
func TestSkips(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		marker   cluster.Marker
		brokerID string
		want     bool
	}{
		{cluster.Marker{}, "ID:1", false},
		{cluster.Marker{Processed: true}, "ID:1", true},
		{cluster.Marker{Processed: true}, "", true},
		{cluster.Marker{InDoubt: "ID:1"}, "ID:1", false}, // the original came back
		{cluster.Marker{InDoubt: "ID:1"}, "ID:2", true},  // another copy
		{cluster.Marker{InDoubt: "ID:1"}, "", false},     // cannot tell
	} {
		if got := skips(tc.marker, tc.brokerID); got != tc.want {
			t.Errorf("skips(%+v, %q) = %v, want %v", tc.marker, tc.brokerID, got, tc.want)
		}
	}
}
