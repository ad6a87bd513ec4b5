package triggers

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/cluster"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// claimKey is the claim of m-1 by listener p/l.
const claimKey = "delivery:p/l:m-1"

// testClaim claims listener p/l's messages in coord, waiting up to wait
// for another holder; gaveBack counts the messages it gives back.
func testClaim(coord cluster.Coordinator, wait time.Duration, gaveBack *atomic.Int32) claim {
	return claim{m: testMarkers(coord), lease: time.Second, wait: wait,
		giveBack: func(ctx context.Context, d *Delivery) error {
			gaveBack.Add(1)
			return nil
		}}
}

// holdClaim takes m-1's claim as another agent would.
func holdClaim(t *testing.T, coord cluster.Coordinator) cluster.Lease {
	t.Helper()
	lease, err := coord.Acquire(context.Background(), claimKey, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return lease
}

// A message whose claim another agent holds is waited for up to the
// claim's wait; if the holder neither lets go nor commits by then, it is
// given back (giveBack) without running.
func TestClaimHeldElsewhereIsGivenBack(t *testing.T) {
	t.Parallel()
	coord := cluster.NewLocal("agent-1")
	holdClaim(t, coord)
	var gaveBack atomic.Int32
	var ran []string
	h := Claim(testClaim(coord, 300*time.Millisecond, &gaveBack))(ranOps(&ran))
	d := newTestDelivery("A")
	start := time.Now()
	if err := h(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Fatalf("gave up after %s, before the claim's wait", waited)
	}
	if len(ran) != 0 || gaveBack.Load() != 1 {
		t.Fatalf("ran %q, given back %d times; want given back once, nothing run", ran, gaveBack.Load())
	}
}

// While it waits for another holder, Claim watches the holder's markers:
// when the holder commits every operation meanwhile, the message is
// acknowledged as a duplicate without waiting longer, and passed on
// settled.
func TestClaimHolderCommitsMeanwhile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	coord := cluster.NewLocal("agent-1")
	holdClaim(t, coord)
	m := testMarkers(coord)
	commit := time.AfterFunc(150*time.Millisecond, func() {
		for _, op := range []string{"A", "B"} {
			_ = coord.MarkProcessed(ctx, m.keyFor(op, "m-1"), 0)
		}
	})
	defer commit.Stop()
	var gaveBack atomic.Int32
	var ran []string
	d := newTestDelivery("A", "B")
	rec := new(settlements).observe(d, nil)
	if err := Claim(testClaim(coord, 10*time.Second, &gaveBack))(ranOps(&ran))(ctx, d); err != nil {
		t.Fatal(err)
	}
	if len(ran) != 0 || gaveBack.Load() != 0 {
		t.Fatalf("ran %q, given back %d times; want neither", ran, gaveBack.Load())
	}
	want := []string{"A " + store.OutcomeSkippedDuplicate, "B " + store.OutcomeSkippedDuplicate}
	if len(rec.settled) != 1 || !slices.Equal(opOutcomes(rec.settled[0]), want) {
		t.Fatalf("settled %+v, want once with %q", rec.settled, want)
	}
	if got := ackerOf(d).published(); len(got) != 1 || len(got[0]) != 0 {
		t.Fatalf("settlements %q, want one plain ACK", got)
	}
}

// A holder that committed some operations and let go leaves the rest to
// us: once claimed, only the operations without a marker run.
func TestClaimHolderCommitsSomeAndLetsGo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	coord := cluster.NewLocal("agent-1")
	other := holdClaim(t, coord)
	m := testMarkers(coord)
	done := time.AfterFunc(150*time.Millisecond, func() {
		_ = coord.MarkProcessed(ctx, m.keyFor("A", "m-1"), 0)
		_ = other.Release(ctx)
	})
	defer done.Stop()
	var gaveBack atomic.Int32
	var ran []string
	d := newTestDelivery("A", "B")
	if err := Claim(testClaim(coord, 10*time.Second, &gaveBack))(ranOps(&ran))(ctx, d); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ran, []string{"B"}) || gaveBack.Load() != 0 {
		t.Fatalf("ran %q, given back %d times; want B run", ran, gaveBack.Load())
	}
}

// Losing the claim's lease ends the context of the runs in progress
// (Deadline, inside the claim, watches the lease).
func TestClaimLeaseLossCancelsTheRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	coord := cluster.NewLocal("agent-1")
	var gaveBack atomic.Int32
	var runErr error
	h := Chain(func(ctx context.Context, d *Delivery) error {
		if err := ctx.Err(); err != nil {
			t.Errorf("the run's context ended before the lease was lost: %v", err)
		}
		_ = coord.Expire(context.Background(), claimKey) // the lease lapses
		select {
		case <-ctx.Done():
			runErr = ctx.Err()
		case <-time.After(5 * time.Second):
		}
		return nil
	}, Claim(testClaim(coord, 10*time.Second, &gaveBack)), Deadline(time.Minute))
	if err := h(ctx, newTestDelivery("A")); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(runErr, context.Canceled) {
		t.Fatalf("the run's context after the lease was lost: %v, want canceled", runErr)
	}
}

// A commit after the claim's lease was lost fails the fence (another
// agent may have claimed the message): nothing the operation sent is
// published, and the operation rolls back, so that the retry copy names it.
func TestClaimLeaseLossFailsTheCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	coord := cluster.NewLocal("agent-1")
	var gaveBack atomic.Int32
	var commitErr error
	run := func(ctx context.Context, d *Delivery) error {
		a := d.Ops()[0]
		a.Start()
		_ = a.Send(ctx, "/queue/out", []byte("A"), nil)
		_ = coord.Expire(context.Background(), claimKey)
		// Not the run's context, which the loss ends: the fence must
		// refuse the commit by itself.
		commitErr = a.Commit(context.WithoutCancel(ctx))
		return nil
	}
	pol := testPolicy("/queue/in", scripts.Redelivery{MaxRedeliveries: 5})
	d := newTestDelivery("A")
	h := Chain(run, Claim(testClaim(coord, 10*time.Second, &gaveBack)), Redeliver(pol, "/queue/in"), Finish())
	if err := h(ctx, d); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(commitErr, cluster.ErrLeaseLost) {
		t.Fatalf("commit after the lease was lost: %v, want ErrLeaseLost", commitErr)
	}
	want := [][]string{{"/queue/in body"}} // the retry copy alone
	if got := ackerOf(d).published(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("settlements %q, want %q", got, want)
	}
}

// When the listener stops while the claim is held elsewhere, Claim
// returns without settling: the disconnect gives the message back.
func TestClaimStoppingWhileWaitingLeavesItUnsettled(t *testing.T) {
	t.Parallel()
	coord := cluster.NewLocal("agent-1")
	holdClaim(t, coord)
	ctx, cancel := context.WithCancel(context.Background())
	stop := time.AfterFunc(150*time.Millisecond, cancel)
	defer stop.Stop()
	var gaveBack atomic.Int32
	var ran []string
	d := newTestDelivery("A")
	if err := Claim(testClaim(coord, 10*time.Second, &gaveBack))(ranOps(&ran))(ctx, d); err != nil {
		t.Fatalf("stopping returned %v, want nil", err)
	}
	if len(ran) != 0 || gaveBack.Load() != 0 || d.Settled() {
		t.Fatalf("ran %q, given back %d, settled %v; want none", ran, gaveBack.Load(), d.Settled())
	}
}

// Once claimed the delivery belongs to this agent: stopping the listener
// does not end its runs (its ack deadline does), and its commit goes
// through.
func TestClaimStoppingAfterTheClaimLetsTheRunFinish(t *testing.T) {
	t.Parallel()
	coord := cluster.NewLocal("agent-1")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var gaveBack atomic.Int32
	var runErr error
	d := newTestDelivery("A")
	h := Claim(testClaim(coord, 10*time.Second, &gaveBack))(runOps(func(ctx context.Context, op *OpDelivery) error {
		stop() // the listener stops while the run is in progress
		runErr = ctx.Err()
		return op.Send(ctx, "/queue/out", []byte("A"), nil)
	}))
	if err := h(ctx, d); err != nil {
		t.Fatal(err)
	}
	if runErr != nil {
		t.Fatalf("stopping the listener ended the run's context: %v", runErr)
	}
	want := [][]string{{"/queue/out A"}}
	if got := ackerOf(d).published(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("settlements %q, want %q", got, want)
	}
}

// The claim is released when the handler returns: the next delivery of
// the message (a retry copy) can claim it at once.
func TestClaimIsReleasedAfterTheHandler(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	coord := cluster.NewLocal("agent-1")
	var gaveBack atomic.Int32
	h := Claim(testClaim(coord, 10*time.Second, &gaveBack))(runOps(sendsThenFails("A")))
	if err := h(ctx, newTestDelivery("A")); err != nil {
		t.Fatal(err)
	}
	lease, err := coord.Acquire(ctx, claimKey, time.Second)
	if err != nil {
		t.Fatalf("claim after the handler returned: %v", err)
	}
	_ = lease.Release(ctx)
}

// In ackMode auto a message whose claim is held elsewhere was
// acknowledged on receipt and is in another agent's hands: it is settled
// at once as a duplicate, neither waited for nor given back.
func TestClaimHeldElsewhereInAutoModeIsADuplicate(t *testing.T) {
	t.Parallel()
	coord := cluster.NewLocal("agent-1")
	holdClaim(t, coord)
	var gaveBack atomic.Int32
	var ran []string
	d := testDelivery(DeliveryConfig{Operations: []string{"A"}, AckMode: scripts.AckAuto})
	rec := new(settlements).observe(d, nil)
	if err := Claim(testClaim(coord, 300*time.Millisecond, &gaveBack))(ranOps(&ran))(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if len(ran) != 0 || gaveBack.Load() != 0 {
		t.Fatalf("ran %q, given back %d times; want neither", ran, gaveBack.Load())
	}
	want := []string{"A " + store.OutcomeSkippedDuplicate}
	if len(rec.settled) != 1 || !slices.Equal(opOutcomes(rec.settled[0]), want) {
		t.Fatalf("settled %+v, want once with %q", rec.settled, want)
	}
}
