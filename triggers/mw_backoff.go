package triggers

import (
	"context"
	"strings"
	"time"
)

// Backoff holds a retry copy until the instant its HeaderNotBefore names:
// the backoff after the attempt that failed. The copy stays locked to this
// consumer while it waits, and holds no worker. When ctx ends first the
// delivery is left unsettled: the disconnect gives it back.
func Backoff() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, d *Delivery) error {
			v := strings.TrimSpace(d.msg.Headers.Get(HeaderNotBefore))
			if v == "" {
				return next(ctx, d)
			}
			at, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return next(ctx, d) // not ours to judge: run it now
			}
			if wait := time.Until(at); wait > 0 {
				t := time.NewTimer(wait)
				defer t.Stop()
				select {
				case <-ctx.Done():
					return nil
				case <-t.C:
				}
			}
			return next(ctx, d)
		}
	}
}
