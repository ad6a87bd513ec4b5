package triggers

import (
	"context"
	"testing"
	"time"
)

// notBefore is a retry copy of m-1 due at v (HeaderNotBefore).
func notBefore(v string) *Delivery {
	return testDelivery(DeliveryConfig{Operations: []string{"A"},
		Message: Message{Attempt: 2, Headers: Headers{HeaderAttempt, "2", HeaderNotBefore, v}}})
}

// A retry copy whose opsrunner-not-before is in the future reaches the
// handler no earlier than that instant.
func TestBackoffWaitsUntilNotBefore(t *testing.T) {
	t.Parallel()
	at := time.Now().Add(300 * time.Millisecond).UTC()
	d := notBefore(at.Format(time.RFC3339Nano))
	var ran time.Time
	h := Backoff()(func(ctx context.Context, d *Delivery) error {
		ran = time.Now()
		return nil
	})
	if err := h(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if ran.IsZero() {
		t.Fatal("the handler never ran")
	}
	if ran.Before(at) {
		t.Fatalf("ran at %s, %s before its not-before", ran.Format(time.RFC3339Nano), at.Sub(ran))
	}
}

// A message with no opsrunner-not-before, one in the past or one that is
// not an RFC 3339 instant, runs at once: Backoff returns without running
// it only when ctx ends while it waits, so a handler that runs under a
// context that has already ended shows that Backoff did not wait.
func TestBackoffRunsADueMessageAtOnce(t *testing.T) {
	t.Parallel()
	for name, d := range map[string]*Delivery{
		"absent":  testDelivery(DeliveryConfig{Operations: []string{"A"}}),
		"past":    notBefore(time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)),
		"garbled": notBefore("tomorrow at noon"),
		"blank":   notBefore("  "),
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			ran := false
			h := Backoff()(func(ctx context.Context, d *Delivery) error {
				ran = true
				return nil
			})
			if err := h(ctx, d); err != nil {
				t.Fatal(err)
			}
			if !ran {
				t.Fatal("the handler did not run: Backoff waited")
			}
		})
	}
}

// When ctx ends while a copy waits out its backoff, Backoff returns
// without running or settling it: the disconnect gives it back.
func TestBackoffStoppingWhileWaitingLeavesItUnsettled(t *testing.T) {
	t.Parallel()
	d := notBefore(time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano))
	ctx, cancel := context.WithCancel(context.Background())
	stop := time.AfterFunc(50*time.Millisecond, cancel)
	defer stop.Stop()
	ran := false
	h := Backoff()(func(ctx context.Context, d *Delivery) error {
		ran = true
		return nil
	})
	if err := h(ctx, d); err != nil {
		t.Fatalf("stopping returned %v, want nil", err)
	}
	if ran || d.Settled() || len(ackerOf(d).published()) != 0 {
		t.Fatalf("ran %v, settled %v, settlements %q; want none", ran, d.Settled(), ackerOf(d).published())
	}
}
