package triggers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

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
// operation that returned without committing or rolling back.
var ErrNoAcknowledgment = errors.New("rolled back: no acknowledgment")

// ErrRefused is the cause of the rollback of a delivery the filter refused.
var ErrRefused = errors.New("refused by filter")

// ErrDuplicate is the cause recorded for an operation whose processed
// marker says it already committed this message.
var ErrDuplicate = errors.New("already processed")

// ErrCommitInDoubt is wrapped by an Acker's Settle when the transaction
// was sent but never confirmed (the connection broke, or the receipt timed
// out): the broker may have applied it. A delivery whose commit is in
// doubt settles no more: its connection must go, so that the broker gives
// the message back unless the commit applied.
var ErrCommitInDoubt = stompc.ErrInDoubt

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
// acknowledges the message in one transaction, confirmed by the broker
// (an error wrapping ErrCommitInDoubt when it was sent unconfirmed);
// fence, unless nil, is checked right before the transaction commits and
// its error aborts it (checkFence). Send publishes at once (ackMode auto).
type Acker interface {
	Settle(ctx context.Context, sends []Outgoing, fence Fence) error
	Send(destination string, body []byte, headers map[string]string) error
}

// Fence is what must still hold when a settlement commits: the claim's
// lease (a cluster.Lease is one), when the settlement commits what an
// operation did. An interface rather than a func so that passing the
// lease costs no closure per delivery.
type Fence interface {
	// Check returns nil while the fence holds. It may do I/O.
	Check(ctx context.Context) error
}

// checkFence checks fence, if any, for an Acker's Settle.
func checkFence(ctx context.Context, fence Fence) error {
	if fence == nil {
		return nil
	}
	if err := fence.Check(ctx); err != nil {
		return fmt.Errorf("check claim: %w", err)
	}
	return nil
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

// Observer is told of a delivery's settlement. Settling is called right
// before the broker I/O that makes the settlement final, and once more if
// that I/O fails (every operation then rolled back with the failure); an
// error from its first call refuses a commit: the delivery rolls back
// instead (the agent makes its run records durable there). Settled is
// called once, after the broker confirmed the settlement. Both are called
// with the delivery's lock held, from the goroutine that settles it: they
// must not call the delivery's methods that settle or lock it (Message
// and ID are fine). s.Ops must not be modified. An interface, not two
// funcs, so that a long-lived observer (the listener's counts) or one
// allocated anyway (the agent's run record) costs no closure per delivery.
type Observer interface {
	Settling(ctx context.Context, s Settlement) error
	Settled(s Settlement)
}

// SettleFunc observes a delivery's settlement before its broker I/O, as
// Observer.Settling does.
type SettleFunc func(ctx context.Context, s Settlement) error

// Settling calls f.
func (f SettleFunc) Settling(ctx context.Context, s Settlement) error { return f(ctx, s) }

// Settled does nothing.
func (SettleFunc) Settled(Settlement) {}

// SettledFunc observes a delivery's settlement after the broker confirmed
// it, as Observer.Settled does.
type SettledFunc func(s Settlement)

// Settling does nothing.
func (SettledFunc) Settling(context.Context, Settlement) error { return nil }

// Settled calls f.
func (f SettledFunc) Settled(s Settlement) { f(s) }

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
	brokerID    string // the broker's message-id when stable across redelivery, else ""
	redelivered bool   // the broker gave it back (redelivered: true)
	auto        bool   // acknowledged on receipt: sends go out directly
	explicit    bool   // ackMode explicit: only Commit commits
	acker       Acker

	mu       sync.Mutex
	ops      []*OpDelivery
	deadline time.Time // the ack timeout's instant; zero means none
	lease    cluster.Lease
	// claimCtx is the claim's context, which neither stopping the
	// listener nor the ack deadline ends: what follows a settlement (the
	// processed markers) uses it. nil before the claim.
	claimCtx  context.Context
	settled   bool
	inDoubt   bool // a commit went out unconfirmed: no settlement follows
	result    Settlement
	observers []Observer
	// marker writes the processed markers of the committed operations
	// after the settlement (Dedup sets it).
	marker *markers

	// Room inside the delivery for what the usual delivery needs, so that
	// it costs no allocation of its own: the operation of a delivery due
	// to just one, its observers (the listener's counts and the agent's
	// record), and the outcome of its first settlement (outcomesUsed: an
	// observer may keep a Settlement, so the room is handed out once).
	one          OpDelivery
	oneRef       [1]*OpDelivery
	observerRoom [2]Observer
	outcomeRoom  [1]OpOutcome
	outcomesUsed bool
}

// DeliveryConfig describes a delivery for NewDelivery.
type DeliveryConfig struct {
	Message Message
	// Key is the dedup key: the message id unless the listener names a header.
	Key string
	// BrokerID is the broker's message-id of this copy of the message when
	// the broker keeps it across redeliveries (ActiveMQ, the embedded
	// broker), so that it tells the message coming back from another copy
	// with the same dedup key; "" where it is not stable (RabbitMQ). A
	// commit in doubt leaves markers naming it (see Dedup); "" leaves none.
	BrokerID string
	// Operations are the operations due, in binding order.
	Operations  []string
	Redelivered bool
	// AckMode is a scripts.Ack* value; "" is onSuccess.
	AckMode string
	Acker   Acker
}

// NewDelivery returns a pending delivery.
func NewDelivery(c DeliveryConfig) *Delivery {
	d := new(Delivery)
	d.init(c)
	return d
}

// init makes d, a zero Delivery not yet shared, a pending delivery.
func (d *Delivery) init(c DeliveryConfig) {
	d.msg, d.key, d.brokerID, d.redelivered, d.acker = c.Message, c.Key, c.BrokerID, c.Redelivered, c.Acker
	d.auto, d.explicit = c.AckMode == "auto", c.AckMode == "explicit"
	d.observers = d.observerRoom[:0]
	if len(c.Operations) == 1 {
		d.one = OpDelivery{d: d, name: c.Operations[0]}
		d.oneRef[0] = &d.one
		d.ops = d.oneRef[:]
		return
	}
	for _, name := range c.Operations {
		d.ops = append(d.ops, &OpDelivery{d: d, name: name})
	}
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

// Observe registers o, told of the settlement (see Observer); on a
// settled delivery, o.Settling then o.Settled are called at once.
func (d *Delivery) Observe(ctx context.Context, o Observer) {
	d.mu.Lock()
	if !d.settled {
		d.observers = append(d.observers, o)
		d.mu.Unlock()
		return
	}
	s := d.result
	d.mu.Unlock()
	_ = o.Settling(ctx, s)
	o.Settled(s)
}

// OnSettling registers f, told of the settlement before its broker I/O
// (see Observer); on a settled delivery it is called at once.
func (d *Delivery) OnSettling(ctx context.Context, f SettleFunc) { d.Observe(ctx, f) }

// OnSettled registers f, called once with the settlement after the
// broker confirmed it; on a settled delivery it is called at once.
func (d *Delivery) OnSettled(f func(Settlement)) { d.Observe(context.Background(), SettledFunc(f)) }

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

// setClaim makes every commit check that lease is still held (fencing);
// ctx is the claim's context, not ended by stopping the listener.
func (d *Delivery) setClaim(ctx context.Context, l cluster.Lease) {
	d.mu.Lock()
	d.claimCtx, d.lease = ctx, l
	d.mu.Unlock()
}

// detachedLocked is a context for what must follow a settlement whatever
// became of ctx: the claim's, else ctx without its cancellation.
func (d *Delivery) detachedLocked(ctx context.Context) context.Context {
	if d.claimCtx != nil {
		return d.claimCtx
	}
	return context.WithoutCancel(ctx)
}

// claimLease is the lease set by setClaim, or nil.
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
