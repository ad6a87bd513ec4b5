package triggers

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// countStarts is CountStarts for listener p/l with maxRedeliveries max,
// counting in st.
func countStarts(st store.Store, max int) Middleware {
	return CountStarts(st, "p/l", time.Hour, testPolicy("/queue/in", scripts.Redelivery{MaxRedeliveries: max}), slog.New(slog.DiscardHandler))
}

// brokerRedelivery is the broker's redelivery of a copy carrying attempt
// copyAttempt: as the source reads it, one attempt more.
func brokerRedelivery(copyAttempt int) *Delivery {
	return testDelivery(DeliveryConfig{Operations: []string{"A"}, Redelivered: true, Message: Message{Attempt: copyAttempt + 1}})
}

// Each time the broker redelivers the same copy, its start is counted in
// the store: the attempt is the copy's own plus the starts counted, so a
// message that keeps crashing its agent counts up.
func TestCountStartsCountsBrokerRedeliveries(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	h := countStarts(st, 5)
	var attempts []int
	for range 3 {
		err := h(func(ctx context.Context, d *Delivery) error {
			attempts = append(attempts, d.Message().Attempt)
			return nil
		})(context.Background(), brokerRedelivery(2))
		if err != nil {
			t.Fatal(err)
		}
	}
	if want := []int{3, 4, 5}; !slices.Equal(attempts, want) {
		t.Fatalf("attempts %v, want %v", attempts, want)
	}
}

// Once the counted starts pass the redelivery policy, the operations roll
// back unstarted with ErrUnsettled (DeadLetter then settles the message)
// and the handler, still called, runs none of them.
func TestCountStartsPastThePolicyRollsBackUnstarted(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	h := countStarts(st, 1)
	var ran []string
	for i := range 2 {
		d := brokerRedelivery(1)
		if err := h(ranOps(&ran))(context.Background(), d); err != nil {
			t.Fatal(err)
		}
		failed, cause := d.Failed()
		switch i {
		case 0: // attempt 2: one redelivery, within the policy
			if failed || !slices.Equal(ran, []string{"A"}) {
				t.Fatalf("attempt 2: failed %v (%v), ran %q; want A run", failed, cause, ran)
			}
		case 1: // attempt 3: past it
			if !failed || !errors.Is(cause, ErrUnsettled) {
				t.Fatalf("attempt 3: failed %v, cause %v; want ErrUnsettled", failed, cause)
			}
			if len(ran) != 1 {
				t.Fatalf("ran %q, want A not run again", ran)
			}
		}
	}
}

// A message the broker did not redeliver is none of CountStarts' business:
// its attempt stays and nothing is counted.
func TestCountStartsLeavesFirstDeliveriesAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testStore(t)
	d := testDelivery(DeliveryConfig{Operations: []string{"A"}, Message: Message{Attempt: 4}})
	var ran []string
	if err := countStarts(st, 1)(ranOps(&ran))(ctx, d); err != nil {
		t.Fatal(err)
	}
	if d.Message().Attempt != 4 || !slices.Equal(ran, []string{"A"}) {
		t.Fatalf("attempt %d, ran %q; want attempt 4 and A run", d.Message().Attempt, ran)
	}
	n, err := st.Increment(ctx, "starts:p/l:m-1:3", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("counted %d starts before, want none", n-1)
	}
}

// Without a store each broker redelivery counts one attempt: the one the
// source added.
func TestCountStartsWithoutAStore(t *testing.T) {
	t.Parallel()
	h := countStarts(nil, 1)
	var attempts []int
	for range 2 {
		err := h(func(ctx context.Context, d *Delivery) error {
			attempts = append(attempts, d.Message().Attempt)
			return nil
		})(context.Background(), brokerRedelivery(1))
		if err != nil {
			t.Fatal(err)
		}
	}
	if want := []int{2, 2}; !slices.Equal(attempts, want) {
		t.Fatalf("attempts %v, want %v", attempts, want)
	}
}
