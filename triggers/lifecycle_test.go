package triggers_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/cluster"
	"github.com/opsrunner/opsrunner/internal/testenv"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
	"github.com/opsrunner/opsrunner/triggers"
)

var errBoom = errors.New("boom")

// expiringCoordinator is a local coordinator that reports every key it
// grants, so a test can make that claim lapse as if another agent took it.
type expiringCoordinator struct {
	*cluster.Local
	claimed chan string
}

func (c *expiringCoordinator) Acquire(ctx context.Context, key string, ttl time.Duration) (cluster.Lease, error) {
	l, err := c.Local.Acquire(ctx, key, ttl)
	if err == nil {
		c.claimed <- key
	}
	return l, err
}

// TestLifecycle runs the delivery lifecycle table on every available broker.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	forEachBroker(t, func(t *testing.T, b *testenv.Broker) {
		t.Run("commit removes and publishes sends once", func(t *testing.T) {
			t.Parallel()
			in, out := "/queue/"+uniq("commit"), "/queue/"+uniq("commit.out")
			h := newHarness(t, b, harnessOpts{run: func(ctx context.Context, _ triggers.ListenerSpec, d *triggers.OpDelivery) error {
				return d.Send(ctx, out, append([]byte("re:"), d.Message().Body...), nil)
			}}, spec(uniq("commit"), in, func(l *scripts.Listener) { l.Consumers = 2 }))
			send(t, b, in, nil, "a", "b", "c")
			for range 3 {
				if e := h.next(20 * time.Second); e.Outcome != store.OutcomeCommitted || e.Attempt != 1 {
					t.Errorf("settlement = %+v, want committed attempt 1", e)
				}
			}
			h.stop()
			if got := bodies(drain(t, b, out, 500*time.Millisecond)); len(got) != 3 || got["re:a"] != 1 || got["re:b"] != 1 || got["re:c"] != 1 {
				t.Errorf("sends = %v, want re:a re:b re:c once each", got)
			}
			if left := drain(t, b, in, 300*time.Millisecond); len(left) != 0 {
				t.Errorf("%d messages left on %s after commit", len(left), in)
			}
		})

		t.Run("rollback redelivers with backoff then dead-letters", func(t *testing.T) {
			t.Parallel()
			in, out := "/queue/"+uniq("rb"), "/queue/"+uniq("rb.out")
			var mu sync.Mutex
			var times []time.Time
			sp := spec(uniq("rb"), in, func(l *scripts.Listener) { l.Redelivery.MaxRedeliveries = 2 })
			h := newHarness(t, b, harnessOpts{run: func(ctx context.Context, _ triggers.ListenerSpec, d *triggers.OpDelivery) error {
				mu.Lock()
				times = append(times, time.Now())
				mu.Unlock()
				if err := d.Send(ctx, out, []byte("never"), nil); err != nil {
					return err
				}
				return errBoom
			}}, sp)
			send(t, b, in, map[string]string{"color": "red", "content-type": "application/json"}, `{"n":1}`)
			want := []string{store.OutcomeRolledBack, store.OutcomeRolledBack, store.OutcomeDeadLettered}
			var id string
			for i, w := range want {
				e := h.next(20 * time.Second)
				if e.Outcome != w || e.Attempt != i+1 || !errors.Is(e.Err, errBoom) {
					t.Errorf("settlement %d = %+v, want %s attempt %d cause boom", i, e, w, i+1)
				}
				if id == "" {
					id = e.MessageID
				} else if e.MessageID != id {
					t.Errorf("message id changed across redeliveries: %q then %q", id, e.MessageID)
				}
			}
			mu.Lock()
			if len(times) == 3 && times[2].Sub(times[1]) < 35*time.Millisecond {
				t.Errorf("second backoff %s, want ≥ 40ms (20ms × 2)", times[2].Sub(times[1]))
			}
			mu.Unlock()
			dlq := drain(t, b, in+".DLQ", 500*time.Millisecond)
			if len(dlq) != 1 {
				t.Fatalf("DLQ has %d messages, want 1", len(dlq))
			}
			m := dlq[0]
			for k, v := range map[string]string{
				triggers.HeaderError: errBoom.Error(), triggers.HeaderAttempts: "3",
				triggers.HeaderOriginalDestination: in, triggers.HeaderOriginalMessageID: id,
				triggers.HeaderAgent: "agent-test", "color": "red",
			} {
				if got := m.Header.Get(k); got != v {
					t.Errorf("DLQ header %s = %q, want %q", k, got, v)
				}
			}
			if m.Header.Get(triggers.HeaderFailedAt) == "" || string(m.Body) != `{"n":1}` {
				t.Errorf("DLQ copy: failed-at %q body %q", m.Header.Get(triggers.HeaderFailedAt), m.Body)
			}
			recs, err := h.st.DeadLetters(context.Background(), store.DeadLetterFilter{Listener: sp.ID})
			if err != nil || len(recs) != 1 {
				t.Fatalf("dead letter records = %v, %v; want 1", recs, err)
			}
			if r := recs[0]; r.Attempts != 3 || r.MessageID != id || r.DeadLetterDestination != in+".DLQ" || r.Body != `{"n":1}` || r.Error != "boom" {
				t.Errorf("record = %+v", r)
			}
			if sent := drain(t, b, out, 300*time.Millisecond); len(sent) != 0 {
				t.Errorf("rolled-back sends appeared: %d", len(sent))
			}
			if left := drain(t, b, in, 300*time.Millisecond); len(left) != 0 {
				t.Errorf("%d messages left on %s", len(left), in)
			}

			// Replay republishes the dead letter without its cause headers.
			h.stop()
			replayTo := "/queue/" + uniq("replay")
			r := recs[0]
			r.Destination = replayTo
			h2 := newHarness(t, b, harnessOpts{})
			if err := h2.m.Replay(context.Background(), r); err != nil {
				t.Fatalf("replay: %v", err)
			}
			got := drain(t, b, replayTo, 500*time.Millisecond)
			if len(got) != 1 || string(got[0].Body) != `{"n":1}` || got[0].Header.Get("color") != "red" ||
				got[0].Header.Get(triggers.HeaderError) != "" || got[0].Header.Get(triggers.HeaderAttempts) != "" {
				t.Errorf("replayed = %d messages, first %+v", len(got), got)
			}
		})

		t.Run("explicit without decision rolls back", func(t *testing.T) {
			t.Parallel()
			in := "/queue/" + uniq("explicit")
			h := newHarness(t, b, harnessOpts{run: func(ctx context.Context, _ triggers.ListenerSpec, d *triggers.OpDelivery) error {
				if d.Message().Attempt == 1 {
					return nil // no decision
				}
				return d.Commit(ctx)
			}}, spec(uniq("explicit"), in, func(l *scripts.Listener) { l.AckMode = scripts.AckExplicit }))
			send(t, b, in, nil, "x")
			if e := h.next(20 * time.Second); e.Outcome != store.OutcomeRolledBack || !errors.Is(e.Err, triggers.ErrNoAcknowledgment) {
				t.Errorf("first = %+v, want rolled back: no acknowledgment", e)
			}
			if e := h.next(20 * time.Second); e.Outcome != store.OutcomeCommitted || e.Attempt != 2 {
				t.Errorf("second = %+v, want committed attempt 2", e)
			}
		})

		t.Run("per-message ack timeout rolls back and a late commit fails", func(t *testing.T) {
			t.Parallel()
			in := "/queue/" + uniq("timeout")
			lateErr := make(chan error, 1)
			h := newHarness(t, b, harnessOpts{run: func(ctx context.Context, _ triggers.ListenerSpec, d *triggers.OpDelivery) error {
				if d.Message().Attempt == 1 {
					<-ctx.Done()
					lateErr <- d.Commit(context.Background())
					return ctx.Err()
				}
				return nil
			}}, spec(uniq("timeout"), in, nil))
			start := time.Now()
			send(t, b, in, map[string]string{triggers.HeaderAckTimeout: "0.3"}, "slow")
			e := h.next(20 * time.Second)
			if e.Outcome != store.OutcomeRolledBack || !errors.Is(e.Err, triggers.ErrAckTimeout) {
				t.Errorf("first = %+v, want rolled back: ack timeout", e)
			}
			if el := time.Since(start); el > 10*time.Second {
				t.Errorf("timeout took %s with JBXAcknowledgmentTimeout 0.3", el)
			}
			if err := <-lateErr; !errors.Is(err, triggers.ErrAckTimeout) {
				t.Errorf("late commit = %v, want ErrAckTimeout", err)
			}
			if e := h.next(20 * time.Second); e.Outcome != store.OutcomeCommitted || e.Attempt != 2 {
				t.Errorf("second = %+v, want committed attempt 2", e)
			}
		})

		t.Run("a lost claim interrupts the run and nothing commits", func(t *testing.T) {
			t.Parallel()
			in, out := "/queue/"+uniq("lost"), "/queue/"+uniq("lost.out")
			coord := &expiringCoordinator{Local: cluster.NewLocal("agent-test"), claimed: make(chan string, 4)}
			h := newHarness(t, b, harnessOpts{coord: coord, run: func(ctx context.Context, _ triggers.ListenerSpec, d *triggers.OpDelivery) error {
				if d.Message().Attempt == 1 {
					if err := d.Send(ctx, out, []byte("never"), nil); err != nil {
						return err
					}
					_ = coord.Expire(context.Background(), <-coord.claimed) // another agent's now
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-time.After(10 * time.Second):
						return errors.New("run not interrupted by the lost claim")
					}
				}
				<-coord.claimed
				return nil
			}}, spec(uniq("lost"), in, nil))
			send(t, b, in, nil, "x")
			if e := h.next(20 * time.Second); e.Outcome != store.OutcomeRolledBack || !errors.Is(e.Err, context.Canceled) {
				t.Errorf("first = %+v, want rolled back: context canceled", e)
			}
			if e := h.next(20 * time.Second); e.Outcome != store.OutcomeCommitted || e.Attempt != 2 {
				t.Errorf("second = %+v, want committed attempt 2", e)
			}
			h.stop()
			if got := drain(t, b, out, 300*time.Millisecond); len(got) != 0 {
				t.Errorf("%d sends of the interrupted run were published", len(got))
			}
		})

		t.Run("auto acknowledges on receipt", func(t *testing.T) {
			t.Parallel()
			in := "/queue/" + uniq("auto")
			h := newHarness(t, b, harnessOpts{run: func(context.Context, triggers.ListenerSpec, *triggers.OpDelivery) error {
				return errBoom
			}}, spec(uniq("auto"), in, func(l *scripts.Listener) { l.AckMode = scripts.AckAuto }))
			send(t, b, in, nil, "once")
			if e := h.next(20 * time.Second); e.Outcome != store.OutcomeCommitted {
				t.Errorf("settlement = %+v, want committed", e)
			}
			select {
			case e := <-h.events:
				t.Errorf("auto message delivered again: %+v", e)
			case <-time.After(300 * time.Millisecond):
			}
		})

		t.Run("duplicate dedup key is skipped", func(t *testing.T) {
			t.Parallel()
			in := "/queue/" + uniq("dup")
			var runs atomic32
			h := newHarness(t, b, harnessOpts{run: func(context.Context, triggers.ListenerSpec, *triggers.OpDelivery) error {
				runs.add()
				return nil
			}}, spec(uniq("dup"), in, func(l *scripts.Listener) { l.DedupHeader = "opsrunner-dedup-id" }))
			send(t, b, in, map[string]string{"opsrunner-dedup-id": "order-1"}, "first", "second")
			if e := h.next(20 * time.Second); e.Outcome != store.OutcomeCommitted {
				t.Errorf("first = %+v, want committed", e)
			}
			if e := h.next(20 * time.Second); e.Outcome != store.OutcomeSkippedDuplicate {
				t.Errorf("second = %+v, want skipped_duplicate", e)
			}
			if n := runs.get(); n != 1 {
				t.Errorf("chain ran %d times, want 1", n)
			}
		})

		t.Run("filter refusal rolls back", func(t *testing.T) {
			t.Parallel()
			in := "/queue/" + uniq("filter")
			h := newHarness(t, b, harnessOpts{
				run: func(context.Context, triggers.ListenerSpec, *triggers.OpDelivery) error { return nil },
				filter: func(_ context.Context, _ triggers.ListenerSpec, d *triggers.Delivery) (bool, error) {
					return d.Message().Attempt > 1, nil
				},
			}, spec(uniq("filter"), in, nil))
			send(t, b, in, nil, "f")
			if e := h.next(20 * time.Second); e.Outcome != store.OutcomeRefused || !errors.Is(e.Err, triggers.ErrRefused) {
				t.Errorf("first = %+v, want refused", e)
			}
			if e := h.next(20 * time.Second); e.Outcome != store.OutcomeCommitted || e.Attempt != 2 {
				t.Errorf("second = %+v, want committed attempt 2", e)
			}
		})

		t.Run("selector", func(t *testing.T) {
			if !triggers.SelectorSupported(b.Kind) {
				t.Skipf("%s has no selectors (deploy refuses them)", b.Kind)
			}
			t.Parallel()
			in := "/queue/" + uniq("sel")
			h := newHarness(t, b, harnessOpts{run: func(context.Context, triggers.ListenerSpec, *triggers.OpDelivery) error { return nil }},
				spec(uniq("sel"), in, func(l *scripts.Listener) { l.Selector = "color = 'red'" }))
			send(t, b, in, map[string]string{"color": "blue"}, "blue")
			send(t, b, in, map[string]string{"color": "red"}, "red")
			if e := h.next(20 * time.Second); e.Outcome != store.OutcomeCommitted || e.body != "red" {
				t.Errorf("settlement = %+v, want red committed", e)
			}
			h.stop()
			if left := bodies(drain(t, b, in, 500*time.Millisecond)); left["blue"] != 1 || len(left) != 1 {
				t.Errorf("left on queue = %v, want blue", left)
			}
		})

		t.Run("disabling loses nothing", func(t *testing.T) {
			t.Parallel()
			in, out := "/queue/"+uniq("toggle"), "/queue/"+uniq("toggle.out")
			started := make(chan struct{}, 100)
			sp := spec(uniq("toggle"), in, nil)
			h := newHarness(t, b, harnessOpts{run: func(ctx context.Context, _ triggers.ListenerSpec, d *triggers.OpDelivery) error {
				started <- struct{}{}
				time.Sleep(300 * time.Millisecond)
				return d.Send(ctx, out, d.Message().Body, nil)
			}}, sp)
			const n = 6
			var all []string
			for i := range n {
				all = append(all, "m"+strconv.Itoa(i))
			}
			send(t, b, in, nil, all...)
			<-started
			h.m.Apply(nil) // disable while one is in flight
			if e := h.next(20 * time.Second); e.Outcome != store.OutcomeCommitted {
				t.Errorf("in-flight = %+v, want committed", e)
			}
			time.Sleep(500 * time.Millisecond)
			done := 1
		drainEvents:
			for {
				select {
				case e := <-h.events:
					if e.Outcome != store.OutcomeCommitted {
						t.Errorf("after disable: %+v", e)
					}
					done++
				default:
					break drainEvents
				}
			}
			if done >= n {
				t.Fatalf("all %d messages were processed although the listener was disabled", done)
			}
			h.m.Apply([]triggers.ListenerSpec{sp}) // re-enable
			for done < n {
				if e := h.next(20 * time.Second); e.Outcome != store.OutcomeCommitted {
					t.Errorf("after enable: %+v", e)
				}
				done++
			}
			h.stop()
			got := bodies(drain(t, b, out, 500*time.Millisecond))
			for _, m := range all {
				if got[m] != 1 {
					t.Errorf("output %s appeared %d times, want once (all: %v)", m, got[m], got)
				}
			}
		})
	})
}

type atomic32 struct {
	mu sync.Mutex
	n  int
}

func (a *atomic32) add() { a.mu.Lock(); a.n++; a.mu.Unlock() }
func (a *atomic32) get() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}
