package triggers

import (
	"context"
	"strconv"
	"time"
)

// Redeliver settles a delivery some of whose operations rolled back, and
// that DeadLetter did not take: in one transaction it acknowledges the
// message, publishes the committed operations' sends, and publishes a
// retry copy to the retry destination carrying the next attempt, the
// original message id, the operations that failed (HeaderOperations) and
// the instant its backoff ends (HeaderNotBefore, see Backoff). So the
// operations that committed never run again, and a crash during the
// backoff loses nothing. In ackMode auto nothing is redelivered.
func Redeliver(pol policy, destination string) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, d *Delivery) error {
			err := next(ctx, d)
			if failed, _ := d.Failed(); !failed || d.Settled() {
				return err
			}
			bg := context.WithoutCancel(ctx)
			if d.auto {
				return d.settle(bg, noCopy, nil)
			}
			at := time.Now().Add(pol.backoff(d.msg.Attempt))
			c := retryCopyOf(d, pol.retryDest, destination, d.msg.Attempt+1, at)
			return d.settle(bg, retryCopy, &c)
		}
	}
}

// retryCopyOf is d's message as a copy carrying attempt, due to the
// operations of d that failed (or all of it when nothing ran), not to run
// before at.
func retryCopyOf(d *Delivery, to, destination string, attempt int, at time.Time) Outgoing {
	h := copyHeaders(d.msg.Headers.All(), nil)
	h[HeaderAttempt] = strconv.Itoa(attempt)
	h[HeaderMessageID] = d.msg.ID
	h[HeaderOriginalDestination] = destination
	h[HeaderNotBefore] = at.UTC().Format(time.RFC3339Nano)
	if ops := d.failedOps(); ops != "" {
		h[HeaderOperations] = ops
	}
	h["persistent"] = "true"
	return Outgoing{Destination: to, Body: d.msg.Body, Headers: h}
}

// returnUnchanged gives a message back as it came (same attempt), to run
// again after the listener's initial delay: its claim is held elsewhere.
func returnUnchanged(pol policy, destination string) func(ctx context.Context, d *Delivery) error {
	return func(ctx context.Context, d *Delivery) error {
		at := time.Now().Add(pol.initialDelay)
		attempt := d.msg.Attempt
		if d.redelivered {
			attempt-- // the broker's redelivery did not start it
		}
		c := retryCopyOf(d, pol.retryDest, destination, attempt, at)
		return d.settle(context.WithoutCancel(ctx), returnCopy, &c)
	}
}
