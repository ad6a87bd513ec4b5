package triggers

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// redeliveryPolicy waits 2 s after the first failure, doubling each time,
// and dead-letters after 5 redeliveries.
var redeliveryPolicy = scripts.Redelivery{MaxRedeliveries: 5, InitialDelay: scripts.Duration(2 * time.Second),
	Multiplier: 2, MaxDelay: scripts.Duration(time.Minute)}

// redeliverChain is the lifecycle's end for a listener on destination:
// Redeliver around Finish around h.
func redeliverChain(destination string, h Handler) Handler {
	return Chain(h, Redeliver(testPolicy(destination, redeliveryPolicy), destination), Finish())
}

// onlySettlement is what the delivery's one settlement published; it
// fails the test unless there was exactly one.
func onlySettlement(t *testing.T, d *Delivery) []Outgoing {
	t.Helper()
	a := ackerOf(d)
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.settles) != 1 {
		t.Fatalf("%d settlements, want 1", len(a.settles))
	}
	return a.settles[0]
}

// [A, B] with B failing: one settlement publishes A's sends and one retry
// copy to the retry destination (the queue itself) that carries the next
// attempt, the original message id, the operation still due (B) and the
// instant its backoff ends; so A never runs again.
func TestRedeliverRetryCopyNamesTheFailedOperations(t *testing.T) {
	t.Parallel()
	d := testDelivery(DeliveryConfig{Operations: []string{"A", "B"},
		Message: Message{Attempt: 2, Headers: Headers{"message-id", "ID:broker-9", "color", "red"}}})
	before := time.Now()
	if err := redeliverChain("/queue/in", runOps(sendsThenFails("B")))(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	out := onlySettlement(t, d)
	if len(out) != 2 || out[0].Destination != "/queue/out" || string(out[0].Body) != "A" {
		t.Fatalf("published %+v, want A's send, then the retry copy", out)
	}
	c := out[1]
	if c.Destination != "/queue/in" || string(c.Body) != "body" {
		t.Fatalf("retry copy to %s with body %q, want /queue/in with the message's body", c.Destination, c.Body)
	}
	for name, want := range map[string]string{
		HeaderAttempt: "3", HeaderMessageID: "m-1", HeaderOperations: "B",
		HeaderOriginalDestination: "/queue/in", "persistent": "true", "color": "red", "message-id": "",
	} {
		if got := c.Headers[name]; got != want {
			t.Errorf("retry copy header %s = %q, want %q", name, got, want)
		}
	}
	// The backoff after attempt 2: 2 s × 2.
	at, err := time.Parse(time.RFC3339Nano, c.Headers[HeaderNotBefore])
	if err != nil {
		t.Fatalf("%s: %v", HeaderNotBefore, err)
	}
	if at.Before(before.Add(4*time.Second)) || at.After(after.Add(4*time.Second)) {
		t.Fatalf("not before %s, want 4 s after the failure (%s)", at, before)
	}
}

// A topic listener's retry copy goes to its private retry queue, and
// names the topic as its original destination.
func TestRedeliverTopicCopyGoesToTheRetryQueue(t *testing.T) {
	t.Parallel()
	d := newTestDelivery("A")
	if err := redeliverChain("/topic/news", runOps(sendsThenFails("A")))(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	out := onlySettlement(t, d)
	if len(out) != 1 || out[0].Destination != "/queue/opsrunner.retry.p.l" || out[0].Headers[HeaderOriginalDestination] != "/topic/news" {
		t.Fatalf("published %+v, want one copy to /queue/opsrunner.retry.p.l from /topic/news", out)
	}
}

// A delivery every operation of which committed needs no copy: it
// settled with the last commit, once, and Redeliver leaves it.
func TestRedeliverAllCommittedPublishesNoCopy(t *testing.T) {
	t.Parallel()
	d := newTestDelivery("A", "B")
	if err := redeliverChain("/queue/in", runOps(sendsThenFails()))(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"/queue/out A", "/queue/out B"}}
	if got := ackerOf(d).published(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("settlements %q, want %q", got, want)
	}
}

// In ackMode auto the message was acknowledged on receipt: a failure is
// recorded, nothing is redelivered and the settlement does no I/O.
func TestRedeliverAutoModePublishesNoCopy(t *testing.T) {
	t.Parallel()
	d := testDelivery(DeliveryConfig{Operations: []string{"A"}, AckMode: scripts.AckAuto})
	rec := new(settlements).observe(d, nil)
	failing := func(ctx context.Context, d *Delivery) error { return errBoom } // before running A
	if err := redeliverChain("/queue/in", failing)(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if got := ackerOf(d).published(); len(got) != 0 {
		t.Fatalf("settlements %q, want no I/O", got)
	}
	if !d.Settled() || len(rec.settled) != 1 || !slices.Equal(opOutcomes(rec.settled[0]), []string{"A " + store.OutcomeRolledBack}) {
		t.Fatalf("settled %v with %+v, want A rolled_back", d.Settled(), rec.settled)
	}
}

// A message given back because its claim is held elsewhere keeps its
// attempt (one fewer when the broker's redelivery counted one: it did not
// start), and waits the initial delay.
func TestReturnUnchangedKeepsTheAttempt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		attempt     int
		redelivered bool
		want        string
	}{
		{"a copy", 3, false, "3"},
		{"a broker's redelivery", 3, true, "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := testDelivery(DeliveryConfig{Operations: []string{"A"}, Redelivered: tc.redelivered, Message: Message{Attempt: tc.attempt}})
			giveBack := returnUnchanged(testPolicy("/queue/in", redeliveryPolicy), "/queue/in")
			before := time.Now()
			if err := giveBack(context.Background(), d); err != nil {
				t.Fatal(err)
			}
			out := onlySettlement(t, d)
			if len(out) != 1 || out[0].Destination != "/queue/in" || out[0].Headers[HeaderAttempt] != tc.want {
				t.Fatalf("published %+v, want one copy to /queue/in with attempt %s", out, tc.want)
			}
			at, err := time.Parse(time.RFC3339Nano, out[0].Headers[HeaderNotBefore])
			if err != nil || at.Before(before.Add(2*time.Second)) {
				t.Fatalf("not before %s (%v), want the 2 s initial delay", at, err)
			}
		})
	}
}

// When the broker I/O of a retry copy fails, nothing committed: the
// observers hear again, every operation rolled back (as they do when a
// commit's I/O fails), so that no run record says committed for an
// operation whose sends were never published and that runs again.
func TestRedeliverFailedRetryCopyTellsTheObservers(t *testing.T) {
	t.Parallel()
	d := newTestDelivery("A", "B")
	rec := new(settlements).observe(d, nil)
	lost := errors.New("connection lost")
	ackerOf(d).fail = lost
	err := redeliverChain("/queue/in", runOps(sendsThenFails("B")))(context.Background(), d)
	if !errors.Is(err, lost) {
		t.Fatalf("err %v, want the I/O failure", err)
	}
	if d.Settled() {
		t.Fatal("settled although its I/O failed")
	}
	if n := len(rec.settling); n == 0 {
		t.Fatal("the observers were not told")
	}
	last := rec.settling[len(rec.settling)-1]
	want := []string{"A " + store.OutcomeRolledBack, "B " + store.OutcomeRolledBack}
	if got := opOutcomes(last); !slices.Equal(got, want) {
		t.Fatalf("the observers last heard %q, want %q", got, want)
	}
}
