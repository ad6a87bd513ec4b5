package triggers

import (
	"context"
	"errors"
	"sync"
)

// fakeAcker is a broker side that records what each settlement published.
type fakeAcker struct {
	mu      sync.Mutex
	settles [][]Outgoing // one per acknowledged settlement
	direct  []Outgoing   // Send outside a transaction (ackMode auto)
	fail    error        // returned by the next Settle
}

func (a *fakeAcker) Settle(ctx context.Context, sends []Outgoing, fence Fence) error {
	if err := checkFence(ctx, fence); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail != nil {
		err := a.fail
		a.fail = nil
		return err
	}
	a.settles = append(a.settles, sends)
	return nil
}

func (a *fakeAcker) Send(destination string, body []byte, headers map[string]string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.direct = append(a.direct, Outgoing{Destination: destination, Body: body, Headers: headers})
	return nil
}

// published lists the destinations and bodies of every settlement, in order.
func (a *fakeAcker) published() [][]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out [][]string
	for _, s := range a.settles {
		row := []string{}
		for _, p := range s {
			row = append(row, p.Destination+" "+string(p.Body))
		}
		out = append(out, row)
	}
	return out
}

// newTestDelivery is a pending onSuccess delivery of message m-1 due to ops.
func newTestDelivery(ops ...string) *Delivery {
	return NewDelivery(DeliveryConfig{
		Message:    Message{ID: "m-1", Destination: "/queue/in", Body: []byte("body"), Attempt: 1},
		Key:        "m-1",
		Operations: ops,
		Acker:      &fakeAcker{},
	})
}

func ackerOf(d *Delivery) *fakeAcker { return d.acker.(*fakeAcker) }

var errBoom = errors.New("boom")

// runOps is a handler that runs each pending operation by fn.
func runOps(fn func(ctx context.Context, op *OpDelivery) error) Handler {
	return func(ctx context.Context, d *Delivery) error {
		for _, op := range d.Ops() {
			if op.Pending() {
				op.Start()
				_ = op.Done(ctx, fn(ctx, op))
			}
		}
		return nil
	}
}
