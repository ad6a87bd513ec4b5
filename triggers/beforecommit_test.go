package triggers_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/internal/testenv"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
	"github.com/opsrunner/opsrunner/triggers"
)

// A settlement observer hears of a commit once, after the runs and before
// the broker commit: when it succeeds the delivery commits; when it fails
// the delivery is not committed (its sends are not published) but given
// back, with the observer's error as the cause.
func TestBeforeCommit(t *testing.T) {
	b := testenv.Embedded(t)
	errRecord := errors.New("record failed")
	for _, tc := range []struct {
		name        string
		hookErr     error
		wantOutcome string
		wantEffects int
	}{
		{"success commits", nil, store.OutcomeCommitted, 1},
		{"failure gives the message back", errRecord, store.OutcomeDeadLettered, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, effects := "/queue/"+uniq("before"), "/queue/"+uniq("effects")
			var ran, hooked atomic.Int64
			run := func(ctx context.Context, _ triggers.ListenerSpec, d *triggers.OpDelivery) error {
				ran.Add(1)
				return d.Send(ctx, effects, []byte("effect"), nil)
			}
			hook := func(_ context.Context, s triggers.Settlement) error {
				if outcome, _ := outcomeOf(s); outcome != store.OutcomeCommitted {
					return nil
				}
				if ran.Load() != 1 {
					t.Errorf("observer told of the commit before the run ended (%d runs)", ran.Load())
				}
				hooked.Add(1)
				return tc.hookErr
			}
			h := newHarness(t, b, harnessOpts{run: run, observe: hook}, spec(uniq("before"), in, func(l *scripts.Listener) {
				l.Redelivery.MaxRedeliveries = 0
			}))
			send(t, b, in, nil, "m")
			e := h.next(20 * time.Second)
			if e.Outcome != tc.wantOutcome || (tc.hookErr != nil && !errors.Is(e.Err, tc.hookErr)) {
				t.Fatalf("settlement %+v (%v), want %s", e, e.Err, tc.wantOutcome)
			}
			if n := hooked.Load(); n != 1 {
				t.Fatalf("observer told of the commit %d times, want 1", n)
			}
			if got := drain(t, b, effects, 500*time.Millisecond); len(got) != tc.wantEffects {
				t.Fatalf("%d effects published, want %d", len(got), tc.wantEffects)
			}
		})
	}
}
