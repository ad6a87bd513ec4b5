package triggers

import (
	"context"
	"strconv"
	"strings"
	"time"
)

// Deadline bounds the runs of a delivery by its ack timeout: the
// listener's, or the message's own HeaderAckTimeout (seconds). The runs'
// context ends then, which interrupts them, and the delivery refuses a
// commit from then on (ErrAckTimeout), whoever gets there first. The
// runs' context also ends when the delivery's claim is lost (Claim).
func Deadline(ackTimeout time.Duration) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, d *Delivery) error {
			timeout := ackTimeout
			if v := strings.TrimSpace(d.msg.Headers.Get(HeaderAckTimeout)); v != "" {
				if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 {
					timeout = time.Duration(s * float64(time.Second))
				}
			}
			at := time.Now().Add(timeout)
			d.setDeadline(at)
			ctx, cancel := context.WithDeadline(ctx, at)
			defer cancel()
			if lease := d.claimLease(); lease != nil {
				defer lease.AfterLost(cancel)()
			}
			return next(ctx, d)
		}
	}
}
