package triggers_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/opsrunner/opsrunner/internal/testenv"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
	"github.com/opsrunner/opsrunner/triggers"
)

// A message that the broker keeps giving back because its consumers go away
// mid-run (an agent crashing on it, say) counts an attempt per delivery
// where the broker counts deliveries (the embedded broker): past
// maxRedeliveries it is dead-lettered without running again, instead of
// crashing agents forever.
func TestUnsettledRedeliveriesDeadLetter(t *testing.T) {
	b := testenv.Embedded(t)
	queue := uniq("crashloop")
	in := "/queue/" + queue
	send(t, b, in, nil, "poison")
	for i := range 2 { // two consumers take it and vanish without settling
		c, err := b.Dial(stomp.ConnOpt.Logger(quietLog{}))
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		sub, err := c.Subscribe(in, stomp.AckClientIndividual)
		if err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		select {
		case m := <-sub.C:
			if m.Err != nil || string(m.Body) != "poison" {
				t.Fatalf("delivery %d: %+v", i+1, m)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("delivery %d: nothing within 10s", i+1)
		}
		_ = c.MustDisconnect()
	}

	var runs atomic.Int64
	run := func(context.Context, triggers.ListenerSpec, triggers.Delivery) error { runs.Add(1); return nil }
	h := newHarness(t, b, harnessOpts{run: run}, spec(uniq("crashloop"), in, func(l *scripts.Listener) {
		l.Redelivery.MaxRedeliveries = 1
	}))
	e := h.next(20 * time.Second)
	if e.Outcome != store.OutcomeDeadLettered || !errors.Is(e.Err, triggers.ErrUnsettled) || e.Attempt != 3 {
		t.Fatalf("third delivery: %+v, want dead-lettered as unsettled on attempt 3", e)
	}
	if n := runs.Load(); n != 0 {
		t.Errorf("the dead-lettered message ran %d times", n)
	}
	dl := drain(t, b, in+".DLQ", time.Second)
	if len(dl) != 1 || string(dl[0].Body) != "poison" {
		t.Fatalf("dead-letter queue: %v", bodies(dl))
	}
	if got := dl[0].Header.Get(triggers.HeaderAttempts); got != "2" {
		t.Errorf("%s = %q, want 2 (the deliveries that ran)", triggers.HeaderAttempts, got)
	}
}
