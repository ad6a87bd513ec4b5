package triggers

import (
	"context"
	"errors"
	"fmt"
)

// errNotRun is the cause of rolling back an operation the handler left
// pending without an error.
var errNotRun = errors.New("the operation was not run")

// Finish wraps the handler: a panic becomes its error; every operation it
// left pending rolls back with its error; and when every operation
// committed, the message commits (if the last one's commit did not
// already). Rolled-back operations (a failed commit rolls back every
// operation) are left to Redeliver and DeadLetter; so Finish returns nil.
func Finish() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, d *Delivery) (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("delivery handler panicked: %v", r)
				}
				cause := err
				if cause == nil {
					cause = errNotRun
				}
				d.RollbackAll(cause)
				if !d.Settled() { // usually the last commit settled it already
					_ = d.commitIfDone(context.WithoutCancel(ctx))
				}
				err = nil
			}()
			return next(ctx, d)
		}
	}
}
