package triggers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-stomp/stomp/v3/frame"

	"github.com/opsrunner/opsrunner/cluster"
	"github.com/opsrunner/opsrunner/internal/stompc"
)

// ErrSettled is returned by Commit after a rollback, by Rollback after a
// commit, and by Send after either.
var ErrSettled = errors.New("delivery already settled")

// ErrAckTimeout is the cause of a rollback forced by the ack timeout; a
// Commit attempted afterwards returns it.
var ErrAckTimeout = errors.New("rolled back: ack timeout")

// ErrNoAcknowledgment is the cause of the rollback of an explicit-mode
// delivery whose chains returned without committing or rolling back.
var ErrNoAcknowledgment = errors.New("rolled back: no acknowledgment")

// ErrRefused is the cause of the rollback of a delivery the filter refused.
var ErrRefused = errors.New("refused by filter")

type settleState int

const (
	statePending settleState = iota
	stateCommitted
	stateRolledBack
)

// Bounds on the sends one delivery buffers until it commits: a script that
// sends in a runaway loop fails its run (and the delivery rolls back)
// instead of holding unbounded memory outside its own memory limit.
const (
	MaxPendingSends     = 10_000
	MaxPendingSendBytes = 64 << 20
)

// ErrTooManySends is returned by Send beyond MaxPendingSends or
// MaxPendingSendBytes buffered in one delivery.
var ErrTooManySends = fmt.Errorf("one delivery buffers at most %d sends and %d MiB until it commits", MaxPendingSends, MaxPendingSendBytes>>20)

// pendingSend is a SEND buffered until the delivery commits.
type pendingSend struct {
	destination string
	body        []byte
	headers     map[string]string
}

// stompDelivery is one broker message in flight on a listener consumer. The
// broker keeps the message locked (unacknowledged, client-individual) until
// the delivery settles; sends are buffered and published in the same STOMP
// transaction as the ACK. Settlement is guarded by mu and idempotent.
type stompDelivery struct {
	msg    Message
	origID string
	raw    *stompc.Message
	conn   *stompc.Conn
	auto   bool // acknowledged on receipt: sends go out directly
	lease  cluster.Lease
	// beforeCommit, when set, runs under mu right before the broker commit;
	// its error rolls the delivery back instead (ManagerConfig.BeforeCommit).
	beforeCommit func(ctx context.Context) error
	// onCommit runs after the COMMIT receipt, still under mu (processed marker).
	onCommit func(ctx context.Context)
	// deadline is the ack timeout's instant; zero means none. A Commit at or
	// after it settles as rolled back (ErrAckTimeout), whoever gets there first.
	deadline time.Time

	mu    sync.Mutex
	state settleState
	cause error
	sends []pendingSend
	bytes int // body bytes in sends
}

var _ Delivery = (*stompDelivery)(nil)

// ID is the message's original id: stable across opsrunner's redeliveries.
// It is what scripts pass to Acknowledge(action, messageId).
func (d *stompDelivery) ID() string { return d.origID }

// Message returns the message; its Headers must not be modified.
func (d *stompDelivery) Message() Message { return d.msg }

// Commit publishes the buffered sends and acknowledges the message in one
// STOMP transaction, confirmed by a receipt, after checking the claim lease
// is still held. It blocks for the broker round trip. Idempotent; after a
// rollback it returns ErrSettled (ErrAckTimeout when the deadline caused it).
func (d *stompDelivery) Commit(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch d.state {
	case stateCommitted:
		return nil
	case stateRolledBack:
		if errors.Is(d.cause, ErrAckTimeout) {
			return fmt.Errorf("commit message %s: %w", d.origID, ErrAckTimeout)
		}
		return fmt.Errorf("commit message %s: %w", d.origID, ErrSettled)
	}
	if d.auto {
		d.state = stateCommitted
		return nil
	}
	if d.pastDeadline() {
		d.state, d.cause, d.sends = stateRolledBack, ErrAckTimeout, nil
		return fmt.Errorf("commit message %s: %w", d.origID, ErrAckTimeout)
	}
	if d.beforeCommit != nil {
		if err := d.beforeCommit(ctx); err != nil {
			d.state, d.cause, d.sends = stateRolledBack, err, nil
			return fmt.Errorf("commit message %s: %w", d.origID, err)
		}
	}
	if err := d.commitLocked(ctx); err != nil {
		d.state, d.cause, d.sends = stateRolledBack, err, nil
		return fmt.Errorf("commit message %s: %w", d.origID, err)
	}
	d.state, d.sends = stateCommitted, nil
	if d.onCommit != nil {
		d.onCommit(ctx)
	}
	return nil
}

func (d *stompDelivery) commitLocked(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(d.sends) == 0 {
		// Nothing to publish: a plain ACK suffices. It is not confirmed by
		// a receipt (go-stomp's Ack takes no options); if it is lost, the
		// broker redelivers and the processed marker written next makes
		// that copy a skipped duplicate.
		if d.lease != nil {
			if err := d.lease.Check(ctx); err != nil {
				return fmt.Errorf("check claim: %w", err)
			}
		}
		if err := d.conn.Ack(d.raw); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
		return nil
	}
	tx, err := d.conn.Begin()
	if err != nil {
		return err
	}
	for _, s := range d.sends {
		if err := tx.Send(s.destination, s.body, sendOpts(s.headers)); err != nil {
			_ = tx.Abort()
			return fmt.Errorf("send to %s: %w", s.destination, err)
		}
	}
	if err := tx.Ack(d.raw); err != nil {
		_ = tx.Abort()
		return fmt.Errorf("ack: %w", err)
	}
	// Fencing: the claim must still be ours right before COMMIT.
	if d.lease != nil {
		if err := d.lease.Check(ctx); err != nil {
			_ = tx.Abort()
			return fmt.Errorf("check claim: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// Rollback discards the buffered sends and marks the message to be given
// back; the listener redelivers it after the backoff or dead-letters it.
// It never blocks on I/O. Idempotent; after a commit it returns ErrSettled.
func (d *stompDelivery) Rollback(_ context.Context, cause error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch d.state {
	case stateRolledBack:
		return nil
	case stateCommitted:
		return fmt.Errorf("roll back message %s: %w", d.origID, ErrSettled)
	}
	if cause == nil {
		cause = errors.New("rolled back")
	}
	if d.pastDeadline() {
		cause = ErrAckTimeout // too late to decide: the timeout has
	}
	d.state, d.cause, d.sends = stateRolledBack, cause, nil
	return nil
}

// pastDeadline reports whether the ack timeout has passed. Commit and
// Rollback check it themselves, so that no timer is needed per delivery.
func (d *stompDelivery) pastDeadline() bool {
	return !d.deadline.IsZero() && !time.Now().Before(d.deadline)
}

// Send buffers a message to be published when the delivery commits (in
// ackMode auto it is sent at once). After settlement it returns ErrSettled.
func (d *stompDelivery) Send(ctx context.Context, destination string, body []byte, headers map[string]string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.auto {
		if err := d.conn.Send(destination, body, sendOpts(headers)); err != nil {
			return fmt.Errorf("send to %s: %w", destination, err)
		}
		return nil
	}
	if d.state != statePending {
		return fmt.Errorf("send to %s: %w", destination, ErrSettled)
	}
	if len(d.sends) >= MaxPendingSends || d.bytes+len(body) > MaxPendingSendBytes {
		return fmt.Errorf("send to %s: %w", destination, ErrTooManySends)
	}
	d.bytes += len(body)
	h := make(map[string]string, len(headers))
	for k, v := range headers {
		h[k] = v
	}
	d.sends = append(d.sends, pendingSend{destination: destination, body: append([]byte(nil), body...), headers: h})
	return nil
}

// expire settles a pending delivery as rolled back by the ack timeout.
func (d *stompDelivery) expire() {
	_ = d.Rollback(context.Background(), ErrAckTimeout)
}

// outcome returns the settlement state and cause.
func (d *stompDelivery) outcome() (settleState, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state, d.cause
}

// sendOpts turns headers into a SEND frame option. Content-type travels as a
// header; persistent defaults to true so copies survive a broker restart.
func sendOpts(h map[string]string) func(*frame.Frame) error {
	return func(f *frame.Frame) error {
		if _, ok := h["persistent"]; !ok {
			f.Header.Set("persistent", "true")
		}
		for k, v := range h {
			f.Header.Set(k, v)
		}
		return nil
	}
}
