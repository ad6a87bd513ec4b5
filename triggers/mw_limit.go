package triggers

import "context"

// Limit bounds the deliveries in progress on the agent by its slots (one
// per worker). When ctx ends while waiting for a slot, the delivery is
// left unsettled: the disconnect gives it back. nil slots is unbounded.
func Limit(slots *Slots) Middleware {
	return func(next Handler) Handler {
		if slots == nil {
			return next
		}
		return func(ctx context.Context, d *Delivery) error {
			if err := slots.Acquire(ctx); err != nil {
				return nil
			}
			defer slots.Release()
			return next(ctx, d)
		}
	}
}
