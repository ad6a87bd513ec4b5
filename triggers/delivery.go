package triggers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/opsrunner/opsrunner/cluster"
)

// ErrSettled is returned by Commit after a rollback, by Rollback after a
// commit, and by Send after either.
var ErrSettled = errors.New("delivery already settled")

// ErrAckTimeout is the cause of a rollback forced by the ack timeout; a
// Commit attempted afterwards returns it.
var ErrAckTimeout = errors.New("rolled back: ack timeout")

// ErrNoAcknowledgment is the cause of the rollback of an explicit-mode
// operation that returned without committing or rolling back.
var ErrNoAcknowledgment = errors.New("rolled back: no acknowledgment")

// ErrRefused is the cause of the rollback of a delivery the filter refused.
var ErrRefused = errors.New("refused by filter")

// ErrDuplicate is the cause recorded for an operation whose processed
// marker says it already committed this message.
var ErrDuplicate = errors.New("already processed")

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

type opState int

const (
	opPending opState = iota
	opCommitted
	opRolledBack
	opSkipped // not run now and not owed: a duplicate, or its binding is off
)

// Outgoing is a message a settlement publishes: a send buffered until
// the delivery commits, or a retry copy or dead letter.
type Outgoing struct {
	Destination string
	Body        []byte
	Headers     map[string]string
}

// Acker is the broker side of a delivery. Settle publishes sends and
// acknowledges the message in one transaction, confirmed by the broker;
// fence runs right before the transaction commits and its error aborts it.
// Send publishes at once (ackMode auto).
type Acker interface {
	Settle(ctx context.Context, sends []Outgoing, fence func(context.Context) error) error
	Send(destination string, body []byte, headers map[string]string) error
}

// OpOutcome is how one operation of a delivery settled.
type OpOutcome struct {
	Operation string
	// Outcome is one of the store.Outcome* values.
	Outcome string
	// Err is the rollback cause, or an auto delivery's run error.
	Err error
	// Sends counts the messages the operation published with the commit.
	Sends int
}

// Settlement is how a delivery settled, operation by operation.
type Settlement struct {
	MessageID string
	// Attempt counts deliveries of the message, from 1.
	Attempt int
	Ops     []OpOutcome
}

// SettleFunc observes a delivery's settlement. It is called right before
// the broker I/O that makes the settlement final, and once more if that
// I/O fails (every operation then rolled back with the failure). An error
// from the first call refuses a commit: the delivery rolls back instead.
// The agent makes its run records durable there.
type SettleFunc func(ctx context.Context, s Settlement) error

// copyKind says what a settlement publishes besides the committed
// operations' sends.
type copyKind int

const (
	noCopy         copyKind = iota // commit: every due operation committed or was skipped
	retryCopy                      // the operations that failed run again later
	deadLetterCopy                 // the operations that failed are given up
	returnCopy                     // nothing ran: given back unchanged
)

// Delivery is one broker message in flight through a listener's handler
// chain, shared by the operations it is due to. Each operation settles its
// share once (Op); the delivery settles once, through settle, the one path
// that talks to the broker: commit, skip, retry copy, dead letter or
// return. Safe from any goroutine.
type Delivery struct {
	msg         Message
	key         string // dedup key
	redelivered bool   // the broker gave it back (redelivered: true)
	auto        bool   // acknowledged on receipt: sends go out directly
	explicit    bool   // ackMode explicit: only Commit commits
	acker       Acker

	mu        sync.Mutex
	ops       []*OpDelivery
	deadline  time.Time // the ack timeout's instant; zero means none
	lease     cluster.Lease
	settled   bool
	result    Settlement
	observers []SettleFunc
	after     []func(Settlement)
	// marker writes the processed markers of the committed operations
	// after the settlement (Dedup sets it).
	marker *markers

	// one holds the operation of a delivery due to just one, the usual
	// case, so that it costs no allocation of its own.
	one    OpDelivery
	oneRef [1]*OpDelivery
}

// DeliveryConfig describes a delivery for NewDelivery.
type DeliveryConfig struct {
	Message Message
	// Key is the dedup key: the message id unless the listener names a header.
	Key string
	// Operations are the operations due, in binding order.
	Operations  []string
	Redelivered bool
	// AckMode is a scripts.Ack* value; "" is onSuccess.
	AckMode string
	Acker   Acker
}

// NewDelivery returns a pending delivery.
func NewDelivery(c DeliveryConfig) *Delivery {
	d := &Delivery{
		msg: c.Message, key: c.Key, redelivered: c.Redelivered, acker: c.Acker,
		auto: c.AckMode == "auto", explicit: c.AckMode == "explicit",
	}
	if len(c.Operations) == 1 {
		d.one = OpDelivery{d: d, name: c.Operations[0]}
		d.oneRef[0] = &d.one
		d.ops = d.oneRef[:]
		return d
	}
	for _, name := range c.Operations {
		d.ops = append(d.ops, &OpDelivery{d: d, name: name})
	}
	return d
}

// Message returns the message; its Headers must not be modified.
func (d *Delivery) Message() Message { return d.msg }

// ID is the message's original id: stable across opsrunner's redeliveries.
func (d *Delivery) ID() string { return d.msg.ID }

// Ops are the delivery's operations, in binding order.
func (d *Delivery) Ops() []*OpDelivery { return d.ops }

// Pending reports whether some operation has not settled yet.
func (d *Delivery) Pending() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pendingLocked()
}

func (d *Delivery) pendingLocked() bool {
	for _, op := range d.ops {
		if op.state == opPending {
			return true
		}
	}
	return false
}

// Failed reports whether some operation rolled back, and the first cause.
func (d *Delivery) Failed() (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, op := range d.ops {
		if op.state == opRolledBack {
			return true, op.cause
		}
	}
	return false, nil
}

// Settled reports whether the delivery has settled.
func (d *Delivery) Settled() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.settled
}

// OnSettling registers f, told of the settlement before its broker I/O
// (see SettleFunc); on a settled delivery it is called at once.
func (d *Delivery) OnSettling(ctx context.Context, f SettleFunc) {
	d.mu.Lock()
	if !d.settled {
		d.observers = append(d.observers, f)
		d.mu.Unlock()
		return
	}
	s := d.result
	d.mu.Unlock()
	_ = f(ctx, s)
}

// OnSettled registers f, called once with the settlement after the
// broker confirmed it; on a settled delivery it is called at once.
func (d *Delivery) OnSettled(f func(Settlement)) {
	d.mu.Lock()
	if !d.settled {
		d.after = append(d.after, f)
		d.mu.Unlock()
		return
	}
	s := d.result
	d.mu.Unlock()
	f(s)
}

// setAttempt sets the attempt the delivery counts (a broker redelivery).
func (d *Delivery) setAttempt(n int) {
	d.mu.Lock()
	d.msg.Attempt = n
	d.mu.Unlock()
}

// setDeadline bounds the delivery: a Commit at or after t rolls back with
// ErrAckTimeout, whoever gets there first.
func (d *Delivery) setDeadline(t time.Time) {
	d.mu.Lock()
	d.deadline = t
	d.mu.Unlock()
}

// setLease makes every commit check that lease is still held (fencing).
func (d *Delivery) setLease(l cluster.Lease) {
	d.mu.Lock()
	d.lease = l
	d.mu.Unlock()
}

// claimLease is the lease set by setLease, or nil.
func (d *Delivery) claimLease() cluster.Lease {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lease
}

func (d *Delivery) pastDeadline() bool {
	return !d.deadline.IsZero() && !time.Now().Before(d.deadline)
}

// RollbackAll rolls back every pending operation with cause (a filter's
// refusal, a handler that failed before running them).
func (d *Delivery) RollbackAll(cause error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, op := range d.ops {
		op.rollbackLocked(cause)
	}
}

// skipAll marks every pending operation a skipped duplicate.
func (d *Delivery) skipAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, op := range d.ops {
		op.skipDuplicateLocked()
	}
}

// failedOps names the operations that rolled back, comma-separated.
func (d *Delivery) failedOps() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var names []string
	for _, op := range d.ops {
		if op.state == opRolledBack {
			names = append(names, op.name)
		}
	}
	return strings.Join(names, ",")
}

// commitIfDone settles the delivery when no operation is pending and none
// rolled back: the last operation to commit commits the message.
func (d *Delivery) commitIfDone(ctx context.Context) error {
	d.mu.Lock()
	done := !d.settled && !d.pendingLocked()
	for _, op := range d.ops {
		done = done && op.state != opRolledBack
	}
	d.mu.Unlock()
	if !done {
		return nil
	}
	return d.settle(ctx, noCopy, nil)
}
