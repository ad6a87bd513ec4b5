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
	return func(ctx context.Context, d *triggers.Delivery) error {
		rec := &deliveryRecord{a: a, spec: spec, d: d, runs: map[string]*opRun{}}
		d.OnSettling(ctx, rec.settling)
		d.OnSettled(rec.settled)
		if !d.Pending() {
			return nil // nothing to run: a duplicate, or a message to dead-letter unstarted
		}
		p, ok := a.Project(spec.Project)
		if !ok {
			return fmt.Errorf("project %s is not deployed", spec.Project)
		}
		rec.p = p
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
				errs = append(errs, a.runOperation(ctx, rec, op, event))
			}
		}
		return errors.Join(errs...)
	}
}

// runOperation runs one operation for a delivery and settles its share
// (triggers.OpDelivery.Done) by the result.
func (a *Agent) runOperation(ctx context.Context, rec *deliveryRecord, op *triggers.OpDelivery, event map[string]any) error {
	msg := op.Message()
	run := a.newRun(newRunID(), rec.p, op.Name(), "listener")
	run.Listener, run.MessageID, run.Attempt = rec.spec.ID, msg.ID, msg.Attempt
	run.Input, run.InputTruncated = runInput(event)
	r := rec.start(run)
	a.putRun(ctx, run) // visible as running while it runs
	op.Start()
	inv := runtime.Invocation{RunID: run.ID, Project: rec.p, Operation: op.Name(), Trigger: "listener", Event: event, Message: op}
	live := a.startStoredRun(run, rec.p, op.Name())
	res := a.engine.Run(ctx, inv)
	live.end(nil)
	rec.ended(ctx, r, finish(run, res))
	if err := op.Done(ctx, res.Err); err != nil {
		a.log.Warn("settle operation", "listener", rec.spec.ID, "operation", op.Name(), "message", msg.ID, "err", err)
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
// unstarted) gets one record with its outcome.
type deliveryRecord struct {
	a    *Agent
	spec triggers.ListenerSpec
	d    *triggers.Delivery
	p    *scripts.Project // nil until the handler found it

	mu   sync.Mutex
	runs map[string]*opRun // by operation
}

// opRun is one operation's record in the making.
type opRun struct {
	run     store.Run
	ended   bool // run holds the finished run
	unrun   bool // settled without a run: its status follows the outcome
	outcome *triggers.OpOutcome
}

func (rec *deliveryRecord) start(run store.Run) *opRun {
	r := &opRun{run: run}
	rec.mu.Lock()
	rec.runs[run.Operation] = r
	rec.mu.Unlock()
	return r
}

// ended records a finished run; it is written now if the delivery settled.
func (rec *deliveryRecord) ended(ctx context.Context, r *opRun, run store.Run) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	r.run, r.ended = run, true
	if r.outcome != nil {
		rec.write(ctx, r)
	}
}

// settling is the delivery's triggers.SettleFunc, told of a settlement
// before its broker I/O. With run_durability sync, when the settlement
// commits what an operation did, it makes the ended runs durable without
// an outcome; its error refuses the commit.
func (rec *deliveryRecord) settling(ctx context.Context, s triggers.Settlement) error {
	if rec.a.cfg.RunDurability == RunDurabilityBatched || !commits(s) {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	rec.mu.Lock()
	for _, r := range rec.runs {
		if r.ended && r.outcome == nil {
			rec.a.putRun(ctx, r.run)
		}
	}
	rec.mu.Unlock()
	if err := rec.a.store.Flush(ctx); err != nil {
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

// settled is told of the settlement after the broker confirmed it: it
// writes the final record of each operation whose run ended (the others
// when their run ends) and of each it settled without running.
func (rec *deliveryRecord) settled(s triggers.Settlement) {
	ctx := context.Background()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, o := range s.Ops {
		r := rec.runs[o.Operation]
		if r == nil {
			if r = rec.unrun(o.Operation); r == nil {
				continue
			}
			rec.runs[o.Operation] = r
		}
		r.outcome = &o
		if r.ended {
			rec.write(ctx, r)
		}
	}
}

// unrun is the record of an operation the delivery settled without
// running it; nil when the project is gone.
func (rec *deliveryRecord) unrun(op string) *opRun {
	p := rec.p
	if p == nil {
		var ok bool
		if p, ok = rec.a.Project(rec.spec.Project); !ok {
			return nil
		}
	}
	msg := rec.d.Message()
	run := rec.a.newRun(newRunID(), p, op, "listener")
	run.Listener, run.MessageID, run.Attempt = rec.spec.ID, msg.ID, msg.Attempt
	return &opRun{run: finish(run, runtime.Result{Status: store.StatusSucceeded}), ended: true, unrun: true}
}

// write records r's run with its outcome.
func (rec *deliveryRecord) write(ctx context.Context, r *opRun) {
	run, o := r.run, r.outcome
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
	rec.a.metrics.observe(run)
	rec.a.putRun(context.WithoutCancel(ctx), run) // the run's context may have ended
}
