package triggers

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// deadLetterChain is the lifecycle's end for listener p/l on /queue/in
// with maxRedeliveries max, as agent-1 runs it: Redeliver, DeadLetter
// (recording in st), Finish, around h.
func deadLetterChain(max int, st store.Store, h Handler) Handler {
	spec := testSpec("/queue/in", scripts.Redelivery{MaxRedeliveries: max})
	pol := policyFor("agent-1", spec)
	dl := deadLetters{pol: pol, spec: spec, agent: "agent-1", store: st, log: slog.New(slog.DiscardHandler)}
	return Chain(h, Redeliver(pol, "/queue/in"), DeadLetter(dl), Finish())
}

// Past maxRedeliveries, [A, B] with B failing is dead-lettered in one
// settlement that publishes A's sends and the dead letter: to the
// dead-letter destination, with the cause headers and the operation that
// failed; the dead letter is recorded in the store.
func TestDeadLetterPastThePolicy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testStore(t)
	d := testDelivery(DeliveryConfig{Operations: []string{"A", "B"},
		Message: Message{Attempt: 2, Headers: Headers{HeaderAttempt, "2", HeaderMessageID, "m-1", "color", "red"}}})
	rec := new(settlements).observe(d, nil)
	before := time.Now().UTC()
	if err := deadLetterChain(1, st, runOps(sendsThenFails("B")))(ctx, d); err != nil {
		t.Fatal(err)
	}
	out := onlySettlement(t, d)
	if len(out) != 2 || out[0].Destination != "/queue/out" || string(out[0].Body) != "A" {
		t.Fatalf("published %+v, want A's send, then the dead letter", out)
	}
	dead := out[1]
	if dead.Destination != "/queue/in.DLQ" || string(dead.Body) != "body" {
		t.Fatalf("dead letter to %s with body %q, want /queue/in.DLQ with the message's body", dead.Destination, dead.Body)
	}
	for name, want := range map[string]string{
		HeaderError: errBoom.Error(), HeaderAttempts: "2", HeaderOriginalDestination: "/queue/in",
		HeaderOriginalMessageID: "m-1", HeaderAgent: "agent-1", HeaderOperations: "B",
		"color": "red", "persistent": "true", HeaderAttempt: "", HeaderMessageID: "",
	} {
		if got := dead.Headers[name]; got != want {
			t.Errorf("dead letter header %s = %q, want %q", name, got, want)
		}
	}
	if at, err := time.Parse(time.RFC3339Nano, dead.Headers[HeaderFailedAt]); err != nil || at.Before(before) || at.After(time.Now()) {
		t.Errorf("%s = %q (%v), want the time of failure", HeaderFailedAt, dead.Headers[HeaderFailedAt], err)
	}
	want := []string{"A " + store.OutcomeCommitted, "B " + store.OutcomeDeadLettered}
	if len(rec.settled) != 1 || !slices.Equal(opOutcomes(rec.settled[0]), want) {
		t.Fatalf("settled %+v, want once with %q", rec.settled, want)
	}
	letters, err := st.DeadLetters(ctx, store.DeadLetterFilter{Listener: "p/l"})
	if err != nil {
		t.Fatal(err)
	}
	if len(letters) != 1 {
		t.Fatalf("%d dead letters recorded, want 1", len(letters))
	}
	l := letters[0]
	if l.MessageID != "m-1" || l.Attempts != 2 || l.Error != errBoom.Error() || l.DeadLetterDestination != "/queue/in.DLQ" ||
		l.Destination != "/queue/in" || l.Project != "p" || l.Agent != "agent-1" || l.Body != "body" ||
		l.Headers[HeaderOperations] != "B" || l.Headers["color"] != "red" || l.Headers[HeaderError] != "" {
		t.Fatalf("recorded %+v", l)
	}
}

// A failure that has not used up the policy is not DeadLetter's: it is
// left to Redeliver, which publishes a retry copy; nothing is recorded.
func TestDeadLetterNotDueIsLeftToRedeliver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testStore(t)
	d := newTestDelivery("A", "B")
	if err := deadLetterChain(1, st, runOps(sendsThenFails("B")))(ctx, d); err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"/queue/out A", "/queue/in body"}}
	if got := ackerOf(d).published(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("settlements %q, want %q (a retry copy)", got, want)
	}
	if letters, _ := st.DeadLetters(ctx, store.DeadLetterFilter{Listener: "p/l"}); len(letters) != 0 {
		t.Fatalf("recorded %d dead letters, want none", len(letters))
	}
}

// A delivery rolled back unstarted because its runs kept being cut short
// (ErrUnsettled) counts one attempt fewer: this delivery started nothing.
func TestDeadLetterUnsettledCountsOneAttemptFewer(t *testing.T) {
	t.Parallel()
	unsettled := func(ctx context.Context, d *Delivery) error {
		d.RollbackAll(fmt.Errorf("%w (delivery %d)", ErrUnsettled, d.Message().Attempt))
		return nil
	}
	for _, tc := range []struct {
		attempt int
		dead    bool
	}{
		{2, false}, // one start only: redelivered
		{3, true},  // two starts: past maxRedeliveries 1
	} {
		t.Run(fmt.Sprint("attempt ", tc.attempt), func(t *testing.T) {
			ctx := context.Background()
			st := testStore(t)
			d := testDelivery(DeliveryConfig{Operations: []string{"A"}, Message: Message{Attempt: tc.attempt}})
			if err := deadLetterChain(1, st, unsettled)(ctx, d); err != nil {
				t.Fatal(err)
			}
			out := onlySettlement(t, d)
			if len(out) != 1 {
				t.Fatalf("published %+v, want one copy", out)
			}
			if !tc.dead {
				if out[0].Destination != "/queue/in" {
					t.Fatalf("copy to %s, want a retry copy to /queue/in", out[0].Destination)
				}
				return
			}
			if out[0].Destination != "/queue/in.DLQ" || out[0].Headers[HeaderAttempts] != fmt.Sprint(tc.attempt-1) {
				t.Fatalf("copy to %s with %s %s, want a dead letter counting %d attempts",
					out[0].Destination, HeaderAttempts, out[0].Headers[HeaderAttempts], tc.attempt-1)
			}
		})
	}
}

// In ackMode auto nothing is dead-lettered: the message was acknowledged
// on receipt.
func TestDeadLetterAutoModeIsNotDeadLettered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testStore(t)
	d := testDelivery(DeliveryConfig{Operations: []string{"A"}, AckMode: scripts.AckAuto, Message: Message{Attempt: 9}})
	failing := func(ctx context.Context, d *Delivery) error { return errBoom }
	if err := deadLetterChain(0, st, failing)(ctx, d); err != nil {
		t.Fatal(err)
	}
	if got := ackerOf(d).published(); len(got) != 0 {
		t.Fatalf("settlements %q, want no I/O", got)
	}
	if letters, _ := st.DeadLetters(ctx, store.DeadLetterFilter{Listener: "p/l"}); len(letters) != 0 {
		t.Fatalf("recorded %d dead letters, want none", len(letters))
	}
}
