package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/opsrunner/opsrunner/runtime"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
	"github.com/opsrunner/opsrunner/triggers"
)

// listenerHandler is the handler of spec's deliveries, inside the
// listener's lifecycle chain (see the triggers package doc): it runs the
// listener's filter, then each operation due whose binding is on, one
// after the other, settling each by its run's result; and it records the
// runs (deliveryRecord).
func (a *Agent) listenerHandler(spec triggers.ListenerSpec) triggers.Handler {
	l := &listenerRuns{a: a, spec: spec}
	return l.handle
}

// listenerRuns runs and records the deliveries of one listener; it lives
// as long as the listener, so that a delivery costs no closure of its own.
type listenerRuns struct {
	a    *Agent
	spec triggers.ListenerSpec
}

// handle is listenerHandler's Handler.
func (l *listenerRuns) handle(ctx context.Context, d *triggers.Delivery) error {
	a, spec := l.a, &l.spec
	rec := newDeliveryRecord(l, d)
	d.Observe(ctx, rec)
	if !d.Pending() {
		return nil // nothing to run: a duplicate, or a message to dead-letter unstarted
	}
	p, ok := a.Project(spec.Project)
	if !ok {
		return fmt.Errorf("project %s is not deployed", spec.Project)
	}
	rec.setProject(p)
	event := triggers.EventFor(d)
	if spec.Listener.Filter != "" {
		ok, err := a.engine.Filter(ctx, p, spec.Listener.Filter, event)
		if err != nil {
			return fmt.Errorf("filter: %w", err)
		}
		if !ok {
			d.RollbackAll(triggers.ErrRefused)
			return nil
		}
	}
	var errs []error
	for _, op := range d.Ops() {
		switch {
		case !op.Pending():
		case !a.bindingEnabled(ctx, spec.ID, op.Name()):
			op.Skip()
		default:
			if err := a.runOperation(ctx, rec, p, op, event); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// runOperation runs one operation of project p for a delivery and
// settles its share (triggers.OpDelivery.Done) by the result.
func (a *Agent) runOperation(ctx context.Context, rec *deliveryRecord, p *scripts.Project, op *triggers.OpDelivery, event map[string]any) error {
	msg := op.Message()
	spec := &rec.l.spec
	run := a.newRun(newRunID(), p, op.Name(), "listener")
	run.Listener, run.MessageID, run.Attempt = spec.ID, msg.ID, msg.Attempt
	run.Input, run.InputTruncated = runInput(event)
	r := rec.start(op.Name(), run)
	a.putRun(ctx, run) // visible as running while it runs
	op.Start()
	inv := runtime.Invocation{RunID: run.ID, Project: p, Operation: op.Name(), Trigger: "listener", Event: event, Message: op}
	live := a.startStoredRun(run, p, op.Name())
	res := a.engine.Run(ctx, inv)
	live.end(nil)
	rec.ended(ctx, r, finish(run, res))
	if err := op.Done(ctx, res.Err); err != nil {
		a.log.Warn("settle operation", "listener", spec.ID, "operation", op.Name(), "message", msg.ID, "err", err)
	}
	if res.Err != nil {
		return fmt.Errorf("%s: %w", op.Name(), res.Err)
	}
	return nil
}

// deliveryRecord is the run history of one delivery. A run of an
// operation is written as running when it starts, and with its outcome
// once both its run has ended and the delivery has settled. With
// run_durability sync, a settlement that commits an operation's run first
// makes the ended runs durable, their outcome not yet claimed (the broker
// commit may still fail): so a crash after the commit leaves every run in
// the history, at worst without its outcome, and a crash before it never
// leaves a "committed" that did not happen. An operation the delivery
// settled without running (a duplicate, a refusal, a message dead-lettered
// unstarted) gets one record with its outcome. It is the delivery's
// triggers.Observer. One allocation per delivery: it holds the record of
// the usual delivery's one operation itself.
type deliveryRecord struct {
	l *listenerRuns
	d *triggers.Delivery

	mu   sync.Mutex
	p    *scripts.Project // nil until the handler found it
	runs []opRun          // by the operation's index in d.Ops()
	one  [1]opRun         // runs' room when d is due to one operation
}

// opRun is one operation's record in the making.
type opRun struct {
	used    bool // run is this operation's record
	run     store.Run
	ended   bool // run holds the finished run
	unrun   bool // settled without a run: its status follows the outcome
	settled bool // outcome is the operation's
	outcome triggers.OpOutcome
}

func newDeliveryRecord(l *listenerRuns, d *triggers.Delivery) *deliveryRecord {
	rec := &deliveryRecord{l: l, d: d}
	if n := len(d.Ops()); n <= len(rec.one) {
		rec.runs = rec.one[:n]
	} else {
		rec.runs = make([]opRun, n)
	}
	return rec
}

func (rec *deliveryRecord) setProject(p *scripts.Project) {
	rec.mu.Lock()
	rec.p = p
	rec.mu.Unlock()
}

// slotLocked is the record of operation op, nil for an operation the
// delivery is not due to.
func (rec *deliveryRecord) slotLocked(op string) *opRun {
	for i, o := range rec.d.Ops() {
		if o.Name() == op {
			return &rec.runs[i]
		}
	}
	return nil
}

// start records that a run of op started.
func (rec *deliveryRecord) start(op string, run store.Run) *opRun {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	r := rec.slotLocked(op)
	r.used, r.run = true, run
	return r
}

// ended records a finished run; it is written now if the delivery settled.
func (rec *deliveryRecord) ended(ctx context.Context, r *opRun, run store.Run) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	r.run, r.ended = run, true
	if r.settled {
		rec.write(context.WithoutCancel(ctx), r) // the run's context may have ended
	}
}

// Settling implements triggers.Observer: told of a settlement before its
// broker I/O. With run_durability sync, when the settlement commits what
// an operation did, it makes the ended runs durable without an outcome;
// its error refuses the commit.
func (rec *deliveryRecord) Settling(ctx context.Context, s triggers.Settlement) error {
	a := rec.l.a
	if a.cfg.RunDurability == RunDurabilityBatched || !commits(s) {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	rec.mu.Lock()
	for i := range rec.runs {
		if r := &rec.runs[i]; r.used && r.ended && !r.settled {
			a.putRun(ctx, r.run)
		}
	}
	rec.mu.Unlock()
	if err := a.store.Flush(ctx); err != nil {
		return fmt.Errorf("record runs of message %s before commit: %w", s.MessageID, err)
	}
	return nil
}

// commits reports whether s commits some operation's work.
func commits(s triggers.Settlement) bool {
	for _, o := range s.Ops {
		if o.Outcome == store.OutcomeCommitted {
			return true
		}
	}
	return false
}

// Settled implements triggers.Observer: told of the settlement after the
// broker confirmed it, it writes the final record of each operation whose
// run ended (the others when their run ends) and of each it settled
// without running.
func (rec *deliveryRecord) Settled(s triggers.Settlement) {
	ctx := context.Background()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, o := range s.Ops {
		r := rec.slotLocked(o.Operation)
		if r == nil || !r.used && !rec.unrunLocked(r, o.Operation) {
			continue
		}
		r.outcome, r.settled = o, true
		if r.ended {
			rec.write(ctx, r)
		}
	}
}

// unrunLocked makes r the record of operation op, which the delivery
// settled without running it; false when the project is gone.
func (rec *deliveryRecord) unrunLocked(r *opRun, op string) bool {
	a, p := rec.l.a, rec.p
	if p == nil {
		var ok bool
		if p, ok = a.Project(rec.l.spec.Project); !ok {
			return false
		}
	}
	msg := rec.d.Message()
	run := a.newRun(newRunID(), p, op, "listener")
	run.Listener, run.MessageID, run.Attempt = rec.l.spec.ID, msg.ID, msg.Attempt
	*r = opRun{used: true, run: finish(run, runtime.Result{Status: store.StatusSucceeded}), ended: true, unrun: true}
	return true
}

// write records r's run with its outcome; ctx must outlive the run's.
func (rec *deliveryRecord) write(ctx context.Context, r *opRun) {
	run, o := r.run, &r.outcome
	run.Outcome = o.Outcome
	switch {
	case errors.Is(o.Err, triggers.ErrAckTimeout):
		run.Status, run.Error = store.StatusTimedOut, triggers.ErrAckTimeout.Error()
	case o.Err != nil && !errors.Is(o.Err, triggers.ErrDuplicate):
		if run.Error == "" {
			run.Error = o.Err.Error()
		}
		if r.unrun {
			run.Status = store.StatusFailed
		}
	}
	rec.l.a.metrics.observe(run)
	rec.l.a.putRun(ctx, run)
}
