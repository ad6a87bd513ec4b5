package triggers

import (
	"context"
	"slices"
	"testing"

	"github.com/opsrunner/opsrunner/cluster"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// processed reports whether op of listener p/l carries its processed
// marker for dedup key.
func processed(t *testing.T, coord cluster.Coordinator, op, key string) bool {
	t.Helper()
	done, err := coord.Processed(context.Background(), "processed:p/l:"+op+":"+key)
	if err != nil {
		t.Fatal(err)
	}
	return done
}

// ranOps is a runOps handler that commits every pending operation and
// lists those it ran.
func ranOps(ran *[]string) Handler {
	return runOps(func(ctx context.Context, op *OpDelivery) error {
		*ran = append(*ran, op.Name())
		return nil
	})
}

// An operation that carries a processed marker for the message's dedup
// key is skipped (outcome skipped_duplicate); the others run.
func TestDedupSkipsOperationsAlreadyProcessed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	coord := cluster.NewLocal("agent-1")
	m := testMarkers(coord)
	if err := coord.MarkProcessed(ctx, m.keyFor("A", "m-1"), 0); err != nil {
		t.Fatal(err)
	}
	d := newTestDelivery("A", "B")
	rec := new(settlements).observe(d, nil)
	var ran []string
	if err := Dedup(m)(ranOps(&ran))(ctx, d); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ran, []string{"B"}) {
		t.Fatalf("ran %q, want only B", ran)
	}
	if len(rec.settled) != 1 {
		t.Fatalf("settled %d times, want once", len(rec.settled))
	}
	want := []string{"A " + store.OutcomeSkippedDuplicate, "B " + store.OutcomeCommitted}
	if got := opOutcomes(rec.settled[0]); !slices.Equal(got, want) {
		t.Fatalf("outcomes %q, want %q", got, want)
	}
}

// A message every operation of which already processed is acknowledged
// with nothing published, and still handed to the handler, settled, so
// that it can record the duplicate.
func TestDedupAllProcessedIsAcknowledgedAndPassedOn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	coord := cluster.NewLocal("agent-1")
	m := testMarkers(coord)
	for _, op := range []string{"A", "B"} {
		if err := coord.MarkProcessed(ctx, m.keyFor(op, "m-1"), 0); err != nil {
			t.Fatal(err)
		}
	}
	d := newTestDelivery("A", "B")
	rec := new(settlements).observe(d, nil)
	called, settledThen := false, false
	h := Dedup(m)(func(ctx context.Context, d *Delivery) error {
		called, settledThen = true, d.Settled()
		return nil
	})
	if err := h(ctx, d); err != nil {
		t.Fatal(err)
	}
	if !called || !settledThen {
		t.Fatalf("handler called %v, delivery settled when it was %v; want both", called, settledThen)
	}
	if got := ackerOf(d).published(); len(got) != 1 || len(got[0]) != 0 {
		t.Fatalf("settlements %q, want one plain ACK", got)
	}
	want := []string{"A " + store.OutcomeSkippedDuplicate, "B " + store.OutcomeSkippedDuplicate}
	if len(rec.settled) != 1 || !slices.Equal(opOutcomes(rec.settled[0]), want) {
		t.Fatalf("settled %+v, want once with %q", rec.settled, want)
	}
}

// A committed operation's marker, processed:<listener>:<op>:<dedup key>,
// is written once the broker confirmed the settlement, not before; an
// operation that rolled back gets none.
func TestDedupMarksCommittedOperationsAfterTheSettlement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	coord := cluster.NewLocal("agent-1")
	d := testDelivery(DeliveryConfig{Key: "order-7", Operations: []string{"A", "B"}})
	markedBefore := true
	d.OnSettling(ctx, func(ctx context.Context, s Settlement) error {
		markedBefore = processed(t, coord, "A", "order-7")
		return nil
	})
	pol := testPolicy("/queue/in", scripts.Redelivery{MaxRedeliveries: 5})
	h := Chain(runOps(sendsThenFails("B")), Dedup(testMarkers(coord)), Redeliver(pol, "/queue/in"), Finish())
	if err := h(ctx, d); err != nil {
		t.Fatal(err)
	}
	if markedBefore {
		t.Fatal("A's marker was written before the settlement's I/O")
	}
	if !processed(t, coord, "A", "order-7") {
		t.Fatal("A committed and has no marker processed:p/l:A:order-7")
	}
	if processed(t, coord, "B", "order-7") {
		t.Fatal("B rolled back and has a marker")
	}
	if processed(t, coord, "A", "m-1") {
		t.Fatal("the marker is keyed by the message id, not the dedup key")
	}
}
