package triggers

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/cluster"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// testDelivery is a pending delivery of message m-1 (dedup key m-1,
// destination /queue/in, attempt 1, a fakeAcker) with c's fields where
// they are set.
func testDelivery(c DeliveryConfig) *Delivery {
	if c.Message.ID == "" {
		c.Message.ID = "m-1"
	}
	if c.Message.Destination == "" {
		c.Message.Destination = "/queue/in"
	}
	if c.Message.Body == nil {
		c.Message.Body = []byte("body")
	}
	if c.Message.Attempt == 0 {
		c.Message.Attempt = 1
	}
	if c.Key == "" {
		c.Key = c.Message.ID
	}
	if c.Acker == nil {
		c.Acker = &fakeAcker{}
	}
	return NewDelivery(c)
}

// sendsThenFails is a runOps body: each operation sends one message, its
// name, to /queue/out; the operations named in failing then fail.
func sendsThenFails(failing ...string) func(ctx context.Context, op *OpDelivery) error {
	return func(ctx context.Context, op *OpDelivery) error {
		if err := op.Send(ctx, "/queue/out", []byte(op.Name()), nil); err != nil {
			return err
		}
		if slices.Contains(failing, op.Name()) {
			return errBoom
		}
		return nil
	}
}

// settlements records what a delivery's observers hear: each OnSettling
// call, with how many settlements the broker side had confirmed by then,
// and each OnSettled call.
type settlements struct {
	mu       sync.Mutex
	settling []Settlement
	ioBefore []int // confirmed settlements when each settling call came
	settled  []Settlement
}

// observe registers the recorder on d; refuse, when set, is what each
// OnSettling call returns.
func (r *settlements) observe(d *Delivery, refuse error) *settlements {
	d.OnSettling(context.Background(), func(_ context.Context, s Settlement) error {
		n := len(ackerOf(d).published())
		r.mu.Lock()
		defer r.mu.Unlock()
		r.settling = append(r.settling, s)
		r.ioBefore = append(r.ioBefore, n)
		return refuse
	})
	d.OnSettled(func(s Settlement) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.settled = append(r.settled, s)
	})
	return r
}

// opOutcomes lists a settlement's operations as "name outcome".
func opOutcomes(s Settlement) []string {
	var out []string
	for _, o := range s.Ops {
		out = append(out, o.Operation+" "+o.Outcome)
	}
	return out
}

// testPolicy is the policy of listener p/l on destination with redelivery
// r, as agent-1 applies it.
func testPolicy(destination string, r scripts.Redelivery) policy {
	return policyFor("agent-1", testSpec(destination, r))
}

// testSpec is listener p/l of project p on destination, bound to
// operations A and B, with redelivery r.
func testSpec(destination string, r scripts.Redelivery) ListenerSpec {
	return ListenerSpec{ID: "p/l", Project: "p", Version: 1, Listener: scripts.Listener{
		Name: "l", Destination: destination, Operations: []string{"A", "B"}, Redelivery: r}}
}

// testMarkers are listener p/l's processed markers in coord.
func testMarkers(coord cluster.Coordinator) *markers {
	return &markers{coord: coord, listener: "p/l", retention: time.Hour, log: slog.New(slog.DiscardHandler)}
}

// testStore is a bolt store in the test's temporary directory.
func testStore(t *testing.T) *store.Bolt {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "store.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// In ackMode explicit each operation commits its own share: the first to
// commit does no I/O, and the last one's commit publishes every committed
// operation's sends with the ACK, in one settlement.
func TestOpDeliveryExplicitCommitsSettleAsOne(t *testing.T) {
	ctx := context.Background()
	d := testDelivery(DeliveryConfig{Operations: []string{"A", "B"}, AckMode: scripts.AckExplicit})
	a, b := d.Ops()[0], d.Ops()[1]
	for _, op := range d.Ops() {
		op.Start()
		if err := op.Send(ctx, "/queue/out", []byte(op.Name()), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Commit(ctx); err != nil {
		t.Fatalf("commit A: %v", err)
	}
	if got := ackerOf(d).published(); len(got) != 0 || d.Settled() {
		t.Fatalf("after A alone committed: settlements %q, settled %v; want no I/O yet", got, d.Settled())
	}
	if err := b.Commit(ctx); err != nil {
		t.Fatalf("commit B: %v", err)
	}
	want := [][]string{{"/queue/out A", "/queue/out B"}}
	if got := ackerOf(d).published(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("settlements %q, want %q", got, want)
	}
	if !d.Settled() {
		t.Fatal("the delivery is not settled after its last operation committed")
	}
}

// In ackMode explicit an operation whose run ends without committing or
// rolling back rolls back with ErrNoAcknowledgment.
func TestOpDeliveryExplicitWithoutDecisionRollsBack(t *testing.T) {
	ctx := context.Background()
	d := testDelivery(DeliveryConfig{Operations: []string{"A"}, AckMode: scripts.AckExplicit})
	if err := d.Ops()[0].Done(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if failed, cause := d.Failed(); !failed || !errors.Is(cause, ErrNoAcknowledgment) {
		t.Fatalf("failed %v, cause %v; want a rollback with ErrNoAcknowledgment", failed, cause)
	}
	if len(ackerOf(d).published()) != 0 {
		t.Fatal("an operation that did not decide did I/O")
	}
}

// An operation settles once: repeating the same decision is a no-op, the
// opposite one returns ErrSettled, and Send after a decision returns
// ErrSettled.
func TestOpDeliverySettlesOnce(t *testing.T) {
	ctx := context.Background()
	t.Run("commit then rollback", func(t *testing.T) {
		d := testDelivery(DeliveryConfig{Operations: []string{"A", "B"}, AckMode: scripts.AckExplicit})
		a := d.Ops()[0]
		if err := a.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if err := a.Commit(ctx); err != nil {
			t.Fatalf("second commit: %v, want nil", err)
		}
		if err := a.Rollback(ctx, errBoom); !errors.Is(err, ErrSettled) {
			t.Fatalf("rollback after commit: %v, want ErrSettled", err)
		}
		if err := a.Send(ctx, "/queue/out", []byte("late"), nil); !errors.Is(err, ErrSettled) {
			t.Fatalf("send after commit: %v, want ErrSettled", err)
		}
		if err := d.Ops()[1].Send(ctx, "/queue/out", []byte("B"), nil); err != nil {
			t.Fatalf("B, still pending, cannot send: %v", err)
		}
	})
	t.Run("rollback then commit", func(t *testing.T) {
		d := testDelivery(DeliveryConfig{Operations: []string{"A"}, AckMode: scripts.AckExplicit})
		a := d.Ops()[0]
		if err := a.Rollback(ctx, errBoom); err != nil {
			t.Fatal(err)
		}
		if err := a.Rollback(ctx, errors.New("again")); err != nil {
			t.Fatalf("second rollback: %v, want nil", err)
		}
		if err := a.Commit(ctx); !errors.Is(err, ErrSettled) {
			t.Fatalf("commit after rollback: %v, want ErrSettled", err)
		}
		if err := a.Send(ctx, "/queue/out", []byte("late"), nil); !errors.Is(err, ErrSettled) {
			t.Fatalf("send after rollback: %v, want ErrSettled", err)
		}
		if _, cause := d.Failed(); cause != errBoom {
			t.Fatalf("cause %v, want the first rollback's", cause)
		}
		if len(ackerOf(d).published()) != 0 {
			t.Fatal("a rollback did I/O")
		}
	})
}

// The observers hear of a commit right before its broker I/O, with the
// outcome each operation is about to have, and OnSettled once after it;
// an observer registered later hears of it at once.
func TestDeliveryObserversHearBeforeAndAfterTheIO(t *testing.T) {
	ctx := context.Background()
	d := testDelivery(DeliveryConfig{Operations: []string{"A"}})
	rec := new(settlements).observe(d, nil)
	a := d.Ops()[0]
	a.Start()
	if err := a.Send(ctx, "/queue/out", []byte("A"), nil); err != nil {
		t.Fatal(err)
	}
	if err := a.Done(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if len(rec.settling) != 1 || rec.ioBefore[0] != 0 {
		t.Fatalf("OnSettling calls %d, settlements confirmed before them %v; want one call before any I/O", len(rec.settling), rec.ioBefore)
	}
	s := rec.settling[0]
	if got := opOutcomes(s); !slices.Equal(got, []string{"A committed"}) || s.Ops[0].Sends != 1 || s.MessageID != "m-1" || s.Attempt != 1 {
		t.Fatalf("told %+v, want A committed with 1 send of m-1, attempt 1", s)
	}
	_ = d.commitIfDone(ctx) // settling again is a no-op
	if len(rec.settled) != 1 || len(ackerOf(d).published()) != 1 {
		t.Fatalf("OnSettled calls %d, settlements %d; want one each", len(rec.settled), len(ackerOf(d).published()))
	}
	var late []Settlement
	d.OnSettled(func(s Settlement) { late = append(late, s) })
	if len(late) != 1 {
		t.Fatal("OnSettled on a settled delivery was not called at once")
	}
}

// When the broker I/O of a commit fails, the observers hear again, every
// operation now rolled back; the delivery stays unsettled (nobody is told
// OnSettled) and can still be settled with a retry copy.
func TestDeliveryObserversHearOfAFailedCommit(t *testing.T) {
	ctx := context.Background()
	d := testDelivery(DeliveryConfig{Operations: []string{"A"}})
	rec := new(settlements).observe(d, nil)
	lost := errors.New("connection lost")
	ackerOf(d).fail = lost
	a := d.Ops()[0]
	a.Start()
	_ = a.Send(ctx, "/queue/out", []byte("A"), nil)
	if err := a.Commit(ctx); !errors.Is(err, lost) {
		t.Fatalf("commit: %v, want the I/O failure", err)
	}
	if len(rec.settling) != 2 {
		t.Fatalf("OnSettling calls %d, want 2 (before the I/O, after its failure)", len(rec.settling))
	}
	if got := opOutcomes(rec.settling[0]); !slices.Equal(got, []string{"A committed"}) {
		t.Fatalf("first told %q, want A committed", got)
	}
	if got := opOutcomes(rec.settling[1]); !slices.Equal(got, []string{"A rolled_back"}) {
		t.Fatalf("then told %q, want A rolled_back", got)
	}
	if d.Settled() || len(rec.settled) != 0 {
		t.Fatalf("settled %v, OnSettled calls %d; want an unsettled delivery", d.Settled(), len(rec.settled))
	}
	if failed, cause := d.Failed(); !failed || !errors.Is(cause, lost) {
		t.Fatalf("failed %v, cause %v; want A rolled back by the I/O failure", failed, cause)
	}
}

// An observer's error refuses a commit (the agent could not make its run
// records durable): nothing is published, the operations roll back with
// that error, and the delivery stays unsettled.
func TestDeliveryObserverRefusesACommit(t *testing.T) {
	ctx := context.Background()
	d := testDelivery(DeliveryConfig{Operations: []string{"A"}})
	refusal := errors.New("store unavailable")
	rec := new(settlements).observe(d, refusal)
	a := d.Ops()[0]
	a.Start()
	_ = a.Send(ctx, "/queue/out", []byte("A"), nil)
	if err := a.Commit(ctx); !errors.Is(err, refusal) {
		t.Fatalf("commit: %v, want the observer's refusal", err)
	}
	if got := ackerOf(d).published(); len(got) != 0 {
		t.Fatalf("published %q after a refusal", got)
	}
	if failed, cause := d.Failed(); !failed || !errors.Is(cause, refusal) {
		t.Fatalf("failed %v, cause %v; want A rolled back with the refusal", failed, cause)
	}
	if d.Settled() || len(rec.settled) != 0 {
		t.Fatal("a refused commit settled the delivery")
	}
}
