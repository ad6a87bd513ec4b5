package triggers

import (
	"context"
	"log/slog"
	"time"

	"github.com/opsrunner/opsrunner/cluster"
)

// markers reads and writes the processed markers of one listener: one per
// operation and dedup key, so that a redelivery runs only the operations
// that have not committed the message, also on another agent or after a
// restart.
type markers struct {
	coord     cluster.Coordinator
	listener  string
	retention time.Duration
	log       *slog.Logger
}

// keyFor is the processed marker key of op and a dedup key.
func (m *markers) keyFor(op, dedupKey string) string {
	return "processed:" + m.listener + ":" + op + ":" + dedupKey
}

// key is op's processed marker key, built once per delivery.
func (m *markers) key(op *OpDelivery) string {
	if op.markerKey == "" {
		op.markerKey = m.keyFor(op.name, op.d.key)
	}
	return op.markerKey
}

// skipProcessed marks the pending operations of d that carry a marker as
// skipped duplicates (see skips); when none is left to run, it settles d
// (an ACK). A coordinator that cannot be read counts as no marker: the
// claim, then the commit's fencing, still keep the message from
// committing twice.
func (m *markers) skipProcessed(ctx context.Context, d *Delivery) error {
	for _, op := range d.ops {
		if !op.Pending() {
			continue
		}
		mk, err := m.coord.Marker(ctx, m.key(op))
		if err != nil {
			m.log.Warn("read processed marker", "listener", m.listener, "operation", op.name, "err", err)
			continue
		}
		if skips(mk, d.brokerID) {
			op.skipDuplicate()
		}
	}
	if d.Pending() {
		return nil
	}
	return d.settle(context.WithoutCancel(ctx), noCopy, nil)
}

// skips reports whether a marker makes the delivery of broker message id
// brokerID a duplicate. A processed marker does. An in-doubt marker, left
// by a commit sent but never confirmed, does for another copy of the
// message (another broker id, same dedup key): if that commit applied,
// its effect exists; if not, the broker gives its message back, and that
// one, carrying the marker's id, runs again (its transaction cannot have
// applied: an applied commit acknowledged it). Without a stable broker id
// the two cannot be told apart, and the delivery runs: a duplicate is
// better than a loss.
func skips(mk cluster.Marker, brokerID string) bool {
	if mk.Processed {
		return true
	}
	return mk.InDoubt != "" && brokerID != "" && mk.InDoubt != brokerID
}

// mark writes op's marker once its commit is confirmed; ctx must not be
// one that the run's end cancels.
func (m *markers) mark(ctx context.Context, op *OpDelivery) {
	if err := m.coord.MarkProcessed(ctx, m.key(op), m.retention); err != nil {
		m.log.Error("write processed marker", "listener", m.listener, "operation", op.name, "message", op.d.msg.ID, "err", err)
	}
}

// markInDoubt writes op's in-doubt marker, naming the broker message id
// whose commit went out unconfirmed; ctx as for mark.
func (m *markers) markInDoubt(ctx context.Context, op *OpDelivery, brokerID string) {
	m.log.Warn("commit in doubt: copies of the message will be skipped, the message itself run again if the broker gives it back",
		"listener", m.listener, "operation", op.name, "message", op.d.msg.ID, "broker-message-id", brokerID)
	if err := m.coord.MarkInDoubt(ctx, m.key(op), brokerID, m.retention); err != nil {
		m.log.Error("write in-doubt marker", "listener", m.listener, "operation", op.name, "message", op.d.msg.ID, "err", err)
	}
}

// Dedup skips the operations that already committed this message (their
// processed marker exists, or for another copy of it an in-doubt marker:
// see skips) and writes the marker of each operation that commits it. A delivery with nothing left to run is acknowledged and
// passed on settled, so that the handler can record it.
func Dedup(m *markers) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, d *Delivery) error {
			d.mu.Lock()
			d.marker = m
			d.mu.Unlock()
			if d.Pending() {
				if err := m.skipProcessed(ctx, d); err != nil {
					return err
				}
			}
			return next(ctx, d)
		}
	}
}
