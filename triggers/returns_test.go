package triggers_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/opsrunner/opsrunner/internal/testenv"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
	"github.com/opsrunner/opsrunner/triggers"
)

// A message the broker gives back without any opsrunner run having started
// it (consumers that took it and went away, as a stopped listener's
// prefetch does) does not count those returns as attempts: it runs, as its
// second attempt, and is not dead-lettered as a crash loop. (Starts that
// end in crashes do count: cmd/opsrunner TestAgentCrashLoopDeadLetters.)
func TestReturnsWithoutAStartAreNotAttempts(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b *testenv.Broker) {
		in := "/queue/" + uniq("returns")
		send(t, b, in, nil, "m")
		for i := range 2 { // two consumers take it and vanish without settling
			c, err := b.Dial(testenv.QuietLogs())
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			sub, err := c.Subscribe(in, stomp.AckClientIndividual)
			if err != nil {
				t.Fatalf("subscribe: %v", err)
			}
			select {
			case m := <-sub.C:
				if m.Err != nil || string(m.Body) != "m" {
					t.Fatalf("delivery %d: %+v", i+1, m)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("delivery %d: nothing within 10s", i+1)
			}
			_ = c.MustDisconnect()
		}

		var runs atomic.Int64
		run := func(context.Context, triggers.ListenerSpec, *triggers.OpDelivery) error { runs.Add(1); return nil }
		h := newHarness(t, b, harnessOpts{run: run}, spec(uniq("returns"), in, func(l *scripts.Listener) {
			l.Redelivery.MaxRedeliveries = 1
		}))
		if e := h.next(20 * time.Second); e.Outcome != store.OutcomeCommitted || e.Attempt != 2 {
			t.Fatalf("settlement %+v, want committed on attempt 2", e)
		}
		if n := runs.Load(); n != 1 {
			t.Errorf("ran %d times, want 1", n)
		}
	})
}
