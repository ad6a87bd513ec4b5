package triggers_test

import (
	"context"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/store"
	"github.com/opsrunner/opsrunner/triggers"
)

// TestReconnectAfterBrokerRestart restarts each broker under a running
// listener: it reconnects and resubscribes, and a persistent message sent
// after the broker came back is processed exactly once.
// Not parallel: restarting a shared broker would disturb other tests (Go
// runs it before the parallel TestLifecycle starts).
func TestReconnectAfterBrokerRestart(t *testing.T) {
	for _, bs := range brokerStarters {
		t.Run(bs.kind, func(t *testing.T) {
			b := bs.start(t)
			in := "/queue/" + uniq("restart")
			h := newHarness(t, b, harnessOpts{run: func(context.Context, triggers.ListenerSpec, *triggers.OpDelivery) error { return nil }},
				spec(uniq("restart"), in, nil))
			h.waitListening()
			send(t, b, in, nil, "before")
			if e := h.next(20 * time.Second); e.Outcome != store.OutcomeCommitted || e.body != "before" {
				t.Fatalf("before restart: %+v", e)
			}
			b.Restart(t)
			send(t, b, in, nil, "after")
			if e := h.next(60 * time.Second); e.Outcome != store.OutcomeCommitted || e.body != "after" {
				t.Fatalf("after restart: %+v", e)
			}
			select {
			case e := <-h.events:
				t.Errorf("extra settlement after restart: %+v", e)
			case <-time.After(300 * time.Millisecond):
			}
		})
	}
}
