package triggers

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/opsrunner/opsrunner/store"
)

// ErrUnsettled is the cause of dead-lettering a message whose runs were
// started more often than the redelivery policy allows, every earlier one
// having ended without a commit or rollback (its agent crashed or lost its
// connection).
var ErrUnsettled = fmt.Errorf("redelivered by the broker too often without being settled: an agent crashed or lost its connection while running it")

// CountStarts counts the starts of a message the broker gave back
// (redelivered: true). The broker's own counts are not used: a consumer
// that stopped with messages prefetched gives them back too, without
// having started them. Once claimed, a redelivered message counts one
// start more in the store, per copy (its attempt header); so a message that
// keeps crashing agents uses up the redelivery policy and is dead-lettered
// without running (its operations roll back with ErrUnsettled; DeadLetter
// settles it). nil st counts each redelivery as one attempt.
func CountStarts(st store.Store, listener string, retention time.Duration, pol policy, log *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, d *Delivery) error {
			if !d.redelivered || d.auto || !d.Pending() {
				return next(ctx, d)
			}
			attempt := d.msg.Attempt
			if st != nil {
				base := attempt - 1 // the copy's own attempt
				n, err := st.Increment(ctx, "starts:"+listener+":"+d.key+":"+strconv.Itoa(base), retention)
				if err != nil {
					log.Warn("count redelivery", "listener", listener, "message", d.msg.ID, "err", err)
				} else {
					attempt = base + int(n)
					d.setAttempt(attempt)
				}
			}
			if pol.deadLetterDue(attempt - 1) {
				d.RollbackAll(fmt.Errorf("%w (delivery %d)", ErrUnsettled, attempt))
			}
			return next(ctx, d)
		}
	}
}
