package triggers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opsrunner/opsrunner/cluster"
)

// ClaimLease is the lease of a message's claim. It is short and refreshed
// by its holder (every third of it), so that when an agent dies with a
// message in hand, another takes the message over within seconds; the ack
// timeout is enforced by the holder's own deadline (Deadline), not by the
// lease.
const ClaimLease = 3 * time.Second

// claimPoll is how often a claim held elsewhere is tried again.
const claimPoll = 100 * time.Millisecond

// claim is how a listener claims its messages.
type claim struct {
	m *markers
	// lease is the claim's TTL (ClaimLease unless a test says otherwise).
	lease time.Duration
	// wait is how long a claim held by another agent is waited for, its
	// holder's outcome polled (the processed markers).
	wait time.Duration
	// holdBack, when set, delays the claim by the agent's load (a topic
	// copy that runs once in the cluster goes to the least loaded agent).
	holdBack func(ctx context.Context)
	// giveBack returns a message whose claim is held elsewhere past wait,
	// unchanged, after a pause.
	giveBack func(ctx context.Context, d *Delivery) error
}

// Claim takes the message's cluster-wide lock, keyed by listener and dedup
// key, so that one agent at a time runs it. While it waits for another
// holder it watches that holder's markers: operations committed meanwhile
// are skipped. From the claim on the delivery belongs to this agent:
// stopping the listener no longer cuts it short (its ack deadline does),
// and losing the lease fails its commit (and ends its runs: Deadline).
func Claim(c claim) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, d *Delivery) error {
			if !d.Pending() {
				return next(ctx, d)
			}
			if c.holdBack != nil {
				c.holdBack(ctx)
			}
			lease, err := c.acquire(ctx, d)
			switch {
			case err == nil && lease == nil: // nothing left to run
				return next(ctx, d)
			case err != nil && ctx.Err() != nil:
				return nil // stopping: the disconnect gives it back
			case err != nil && d.auto:
				d.skipAll()
				return d.settle(ctx, noCopy, nil)
			case err != nil:
				return c.giveBack(ctx, d)
			}
			bg := context.WithoutCancel(ctx)
			defer lease.Release(bg)
			d.setClaim(bg, lease)
			// The holder before us may have committed between our marker
			// check and our claim: look again now that nobody else can.
			if err := c.m.skipProcessed(bg, d); err != nil {
				return err
			}
			return next(bg, d)
		}
	}
}

// acquire takes the lock, or waits for it up to c.wait. A nil lease with
// a nil error means the holder committed every operation meanwhile.
func (c claim) acquire(ctx context.Context, d *Delivery) (cluster.Lease, error) {
	key := "delivery:" + c.m.listener + ":" + d.key
	deadline := time.Now().Add(c.wait)
	for {
		lease, err := c.m.coord.Acquire(ctx, key, c.lease)
		if err == nil {
			return lease, nil
		}
		if !errors.Is(err, cluster.ErrHeld) || time.Now().After(deadline) {
			return nil, fmt.Errorf("claim message: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("claim message: %w", ctx.Err())
		case <-time.After(claimPoll):
		}
		if err := c.m.skipProcessed(ctx, d); err != nil {
			return nil, err
		}
		if !d.Pending() {
			return nil, nil
		}
	}
}
