package triggers

import (
	"context"
	"errors"
	"fmt"
	"maps"
)

// OpDelivery is a delivery as one of its operations sees it: what a script
// acknowledges (Acknowledge, ctx.message.commit/rollback) and sends
// through. Commit and Rollback settle this operation's share only, once:
// later calls of the same kind are no-ops returning nil, the opposite call
// returns ErrSettled. The message commits when its last due operation
// commits, in the same transaction as every committed operation's sends;
// when some operation rolled back, the listener settles the message after
// the handler returns (a retry copy or a dead letter naming the operations
// that failed, with the committed ones' sends). Safe from any goroutine.
type OpDelivery struct {
	d    *Delivery
	name string

	// Guarded by d.mu.
	state opState
	cause error
	ran   bool // a run of it started: commit writes its processed marker
	sends []Outgoing
	bytes int // body bytes in sends

	markerKey string // its processed marker's key, once built (Dedup)
}

// Name is the operation's name.
func (o *OpDelivery) Name() string { return o.name }

// Message returns the delivery's message.
func (o *OpDelivery) Message() Message { return o.d.msg }

// ID is the message's original id, what scripts pass to Acknowledge.
func (o *OpDelivery) ID() string { return o.d.msg.ID }

// Pending reports whether the operation is still due on this delivery.
func (o *OpDelivery) Pending() bool {
	o.d.mu.Lock()
	defer o.d.mu.Unlock()
	return o.state == opPending
}

// Start records that a run of the operation started.
func (o *OpDelivery) Start() {
	o.d.mu.Lock()
	o.ran = true
	o.d.mu.Unlock()
}

// Skip settles a pending operation without running it and without owing
// it: its binding is off.
func (o *OpDelivery) Skip() {
	o.d.mu.Lock()
	if o.state == opPending {
		o.state = opSkipped
	}
	o.d.mu.Unlock()
}

// skipDuplicate settles a pending operation as already processed.
func (o *OpDelivery) skipDuplicate() {
	o.d.mu.Lock()
	o.skipDuplicateLocked()
	o.d.mu.Unlock()
}

func (o *OpDelivery) skipDuplicateLocked() {
	if o.state == opPending {
		o.state, o.cause, o.sends = opSkipped, ErrDuplicate, nil
	}
}

// Commit settles the operation as committed; when it is the last one due
// it commits the message and blocks for the broker round trip. After a
// rollback it returns ErrSettled (ErrAckTimeout when the deadline caused it).
func (o *OpDelivery) Commit(ctx context.Context) error {
	d := o.d
	d.mu.Lock()
	switch {
	case o.state == opCommitted, o.state == opSkipped:
		d.mu.Unlock()
		return nil
	case o.state == opRolledBack && errors.Is(o.cause, ErrAckTimeout):
		d.mu.Unlock()
		return fmt.Errorf("commit message %s: %w", d.msg.ID, ErrAckTimeout)
	case o.state == opRolledBack:
		d.mu.Unlock()
		return fmt.Errorf("commit message %s: %w", d.msg.ID, ErrSettled)
	case d.pastDeadline() && !d.auto:
		o.state, o.cause, o.sends = opRolledBack, ErrAckTimeout, nil
		d.mu.Unlock()
		return fmt.Errorf("commit message %s: %w", d.msg.ID, ErrAckTimeout)
	}
	o.state = opCommitted
	d.mu.Unlock()
	return d.commitIfDone(ctx)
}

// Rollback settles the operation as rolled back with cause: its sends are
// discarded and it runs again later (or is dead-lettered). It never blocks
// on I/O. After a commit it returns ErrSettled.
func (o *OpDelivery) Rollback(_ context.Context, cause error) error {
	o.d.mu.Lock()
	defer o.d.mu.Unlock()
	switch o.state {
	case opRolledBack:
		return nil
	case opCommitted, opSkipped:
		return fmt.Errorf("roll back message %s: %w", o.d.msg.ID, ErrSettled)
	}
	if cause == nil {
		cause = errors.New("rolled back")
	}
	o.rollbackLocked(cause)
	return nil
}

// rollbackLocked rolls a pending operation back; past the deadline the
// cause is the ack timeout, whatever the caller says.
func (o *OpDelivery) rollbackLocked(cause error) {
	if o.state != opPending {
		return
	}
	if o.d.pastDeadline() {
		cause = ErrAckTimeout
	}
	o.state, o.cause, o.sends = opRolledBack, cause, nil
}

// Done settles the operation by its run's result, as the ack mode says:
// an error rolls back; success commits, except in ackMode explicit, where
// an operation that did not decide rolls back (ErrNoAcknowledgment). In
// ackMode auto the operation counts as committed either way (the message
// was acknowledged on receipt) and err is only recorded. An operation
// already settled keeps its settlement.
func (o *OpDelivery) Done(ctx context.Context, err error) error {
	d := o.d
	if d.auto {
		d.mu.Lock()
		if o.state == opPending {
			o.state, o.cause = opCommitted, err
		}
		d.mu.Unlock()
		return d.commitIfDone(ctx)
	}
	if !o.Pending() {
		return nil
	}
	switch {
	case err != nil:
		return o.Rollback(ctx, err)
	case d.explicit:
		return o.Rollback(ctx, ErrNoAcknowledgment)
	default:
		if err := o.Commit(ctx); err != nil && !errors.Is(err, ErrSettled) {
			return err
		}
		return nil
	}
}

// Send buffers a message to be published when the message commits with
// this operation committed (in ackMode auto it is sent at once). After the
// operation settled it returns ErrSettled.
func (o *OpDelivery) Send(ctx context.Context, destination string, body []byte, headers map[string]string) error {
	d := o.d
	if d.auto {
		if err := d.acker.Send(destination, body, headers); err != nil {
			return fmt.Errorf("send to %s: %w", destination, err)
		}
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if o.state != opPending || d.settled {
		return fmt.Errorf("send to %s: %w", destination, ErrSettled)
	}
	if len(o.sends) >= MaxPendingSends || o.bytes+len(body) > MaxPendingSendBytes {
		return fmt.Errorf("send to %s: %w", destination, ErrTooManySends)
	}
	o.bytes += len(body)
	o.sends = append(o.sends, Outgoing{Destination: destination, Body: append([]byte(nil), body...), Headers: maps.Clone(headers)})
	return nil
}
