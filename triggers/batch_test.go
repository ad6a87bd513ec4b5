package triggers_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/internal/testenv"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
	"github.com/opsrunner/opsrunner/triggers"
)

// A batch-mode listener holds only the message in hand while its operation
// runs, whatever its consumers and prefetch say: the rest of the destination
// stays on the broker, where another client can read it meanwhile.
func TestBatchModeHoldsOnlyTheMessageInHand(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b *testenv.Broker) {
		in := "/queue/" + uniq("batch")
		started := make(chan string, 10)
		release := make(chan struct{})
		run := func(ctx context.Context, _ triggers.ListenerSpec, d *triggers.OpDelivery) error {
			started <- string(d.Message().Body)
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}
		h := newHarness(t, b, harnessOpts{run: run}, spec(uniq("batch"), in, func(l *scripts.Listener) {
			l.Mode, l.Consumers, l.Prefetch = scripts.ModeBatch, 4, 10
			l.CallbackTimeout = scripts.Duration(15 * time.Second)
		}))
		h.waitListening()
		send(t, b, in, nil, "m1", "m2", "m3")

		var held string
		select {
		case held = <-started:
		case <-time.After(20 * time.Second):
			t.Fatal("no run started")
		}
		others := bodies(drain(t, b, in, 2*time.Second))
		if len(others) != 2 || others[held] != 0 {
			t.Errorf("while %s ran, another client read %v; want the other two messages", held, others)
		}
		close(release)
		if e := h.next(20 * time.Second); e.Outcome != store.OutcomeCommitted || e.body != held {
			t.Fatalf("settlement: %+v, want %s committed", e, held)
		}
		select {
		case e := <-h.events:
			t.Errorf("extra settlement: %+v", e)
		case <-time.After(500 * time.Millisecond):
		}
	})
}

// callbackTimeout bounds a batch-mode run below the ack timeout: the run is
// interrupted and the delivery rolled back by the timeout.
func TestBatchModeCallbackTimeout(t *testing.T) {
	b := testenv.Embedded(t)
	in := "/queue/" + uniq("batch-timeout")
	run := func(ctx context.Context, _ triggers.ListenerSpec, d *triggers.OpDelivery) error {
		if d.Message().Attempt == 1 {
			<-ctx.Done() // only the timeout ends the first attempt
		}
		return nil
	}
	h := newHarness(t, b, harnessOpts{run: run}, spec(uniq("batch-timeout"), in, func(l *scripts.Listener) {
		l.Mode = scripts.ModeBatch
		l.CallbackTimeout = scripts.Duration(time.Second)
	}))
	h.waitListening()
	send(t, b, in, nil, "slow")
	e := h.next(20 * time.Second)
	if e.Outcome != store.OutcomeRolledBack || !errors.Is(e.Err, triggers.ErrAckTimeout) {
		t.Fatalf("first attempt: %+v, want rolled back by the ack timeout", e)
	}
	if e := h.next(20 * time.Second); e.Outcome != store.OutcomeCommitted || e.Attempt != 2 {
		t.Fatalf("second attempt: %+v, want committed on attempt 2", e)
	}
}
