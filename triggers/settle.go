package triggers

import (
	"context"
	"errors"
	"fmt"

	"github.com/opsrunner/opsrunner/store"
)

// settle is a delivery's one settlement path. In one broker transaction
// it publishes the committed operations' sends and copy (a retry copy or
// dead letter naming the operations that failed, or the message returned
// unchanged), and acknowledges the message. Observers hear of it right
// before; the processed markers of the committed operations are written
// after. Idempotent: a settled delivery returns nil.
//
// A transaction that went out unconfirmed (ErrCommitInDoubt) may have
// been applied: its operations are recorded rolled back with that cause,
// and marked in doubt (markInDoubtLocked); every later settlement fails,
// so that the connection goes and the broker alone decides: it gives the
// message back unless the commit applied.
func (d *Delivery) settle(ctx context.Context, kind copyKind, copy *Outgoing) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return nil
	}
	if d.inDoubt {
		return fmt.Errorf("settle message %s: %w", d.msg.ID, ErrCommitInDoubt)
	}
	if kind == noCopy && d.pastDeadline() && !d.auto && d.ranLocked() {
		for _, op := range d.ops {
			if op.state == opCommitted {
				op.state, op.cause, op.sends = opRolledBack, ErrAckTimeout, nil
			}
		}
		return fmt.Errorf("commit message %s: %w", d.msg.ID, ErrAckTimeout)
	}
	s := d.settlementLocked(kind)
	if err := d.notifyLocked(ctx, s); err != nil && kind == noCopy {
		d.rollbackCommittedLocked(err)
		return fmt.Errorf("commit message %s: %w", d.msg.ID, err)
	}
	if err := d.publishLocked(ctx, copy); err != nil {
		err = fmt.Errorf("settle message %s: %w", d.msg.ID, err)
		if errors.Is(err, ErrCommitInDoubt) {
			d.markInDoubtLocked(ctx)
		}
		d.rollbackCommittedLocked(err)
		_ = d.notifyLocked(ctx, d.settlementLocked(noCopy))
		return err
	}
	d.settled, d.result = true, s
	for _, op := range d.ops {
		if op.state == opCommitted && op.ran && d.marker != nil {
			d.marker.mark(d.detachedLocked(ctx), op)
		}
		op.sends = nil
	}
	for _, o := range d.observers {
		o.Settled(s)
	}
	return nil
}

// markInDoubtLocked follows a commit sent but never confirmed: each
// operation it committed after a run gets an in-doubt marker naming the
// message's broker id, in place of the processed marker a confirmed
// commit writes. Without a stable broker id nothing is marked: a copy of
// the message may then run again, as before in-doubt markers.
func (d *Delivery) markInDoubtLocked(ctx context.Context) {
	d.inDoubt = true
	if d.marker == nil || d.brokerID == "" {
		return
	}
	for _, op := range d.ops {
		if op.state == opCommitted && op.ran {
			d.marker.markInDoubt(d.detachedLocked(ctx), op, d.brokerID)
		}
	}
}

// ranLocked reports whether some operation of d committed after a run:
// what a commit past the deadline must not publish.
func (d *Delivery) ranLocked() bool {
	for _, op := range d.ops {
		if op.state == opCommitted && op.ran {
			return true
		}
	}
	return false
}

// publishLocked does the broker I/O: nothing in ackMode auto (acknowledged
// on receipt), else one transaction, fenced by the claim lease when it
// commits what an operation did: if another agent may have claimed the
// message meanwhile, only a copy that commits nothing may go.
func (d *Delivery) publishLocked(ctx context.Context, copy *Outgoing) error {
	if d.auto {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var sends []Outgoing
	for _, op := range d.ops {
		if op.state == opCommitted {
			sends = append(sends, op.sends...)
		}
	}
	var fence Fence
	if d.lease != nil && d.ranLocked() {
		fence = d.lease
	}
	if copy != nil {
		sends = append(sends, *copy)
	}
	return d.acker.Settle(ctx, sends, fence)
}

// rollbackCommittedLocked turns the committed operations back into rolled
// back ones with cause: their commit did not happen.
func (d *Delivery) rollbackCommittedLocked(cause error) {
	for _, op := range d.ops {
		if op.state == opCommitted || op.state == opPending {
			op.state, op.cause, op.sends = opRolledBack, cause, nil
		}
	}
}

// notifyLocked tells the observers; the first error is returned.
func (d *Delivery) notifyLocked(ctx context.Context, s Settlement) error {
	var first error
	for _, o := range d.observers {
		if err := o.Settling(ctx, s); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// settlementLocked is what settling with a copy of kind means for each
// operation.
func (d *Delivery) settlementLocked(kind copyKind) Settlement {
	s := Settlement{MessageID: d.msg.ID, Attempt: d.msg.Attempt}
	if len(d.ops) <= len(d.outcomeRoom) && !d.outcomesUsed {
		s.Ops, d.outcomesUsed = d.outcomeRoom[:0], true
	} else {
		s.Ops = make([]OpOutcome, 0, len(d.ops))
	}
	for _, op := range d.ops {
		o := OpOutcome{Operation: op.name, Err: op.cause}
		switch {
		case op.state == opCommitted:
			o.Outcome, o.Sends = store.OutcomeCommitted, len(op.sends)
		case op.state == opSkipped && errors.Is(op.cause, ErrDuplicate):
			o.Outcome = store.OutcomeSkippedDuplicate
		case op.state == opSkipped:
			continue // not run now, not owed: nothing to record
		case kind == deadLetterCopy:
			o.Outcome = store.OutcomeDeadLettered
		case errors.Is(op.cause, ErrRefused):
			o.Outcome = store.OutcomeRefused
		default:
			o.Outcome = store.OutcomeRolledBack
		}
		s.Ops = append(s.Ops, o)
	}
	return s
}
