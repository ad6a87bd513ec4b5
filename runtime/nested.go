package runtime

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dop251/goja"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// Nested chains: RunOperation(ref, true) runs the operation and its
// onSuccess/onFailure chain while the caller's JavaScript is on the stack,
// where no event loop can run (Promise jobs run only once the stack is
// empty). So a chain whose operations complete synchronously runs there,
// as before; from the first operation that returns a pending Promise, the
// rest of the chain goes on as that Promise settles, each step started
// from a callback of the run's event loop, and RunOperation returns a
// Promise of the called operation's outcome, settled once the whole chain
// has ended. Every member is thus awaited before the next starts, within
// the top-level operation's time limit, as the members of a top-level
// chain are.

// nestedChain is a nested chain that is waiting for a Promise: the called
// operation's own, a member's own, or the Promise of a member's chain.
type nestedChain struct {
	r     *run
	p     *scripts.Project
	op    *scripts.Operation // the called operation
	event goja.Value
	depth int // the called operation's

	// The called operation's outcome: its value, or its failure and, when
	// its Promise was rejected, the rejection's reason (what RunOperation's
	// Promise is rejected with).
	val    goja.Value
	f      *failure
	reason goja.Value
	next   []string // the members still to run

	// own says the chain waits for the Promise op returned: its step is
	// step, started at start, in file. Otherwise it waits for the Promise
	// of a member's chain (which records that member's step).
	own   bool
	step  int
	start time.Time
	file  string

	promise         *goja.Object // what RunOperation returned
	resolve, reject func(any) error
}

// runNested runs op and its chain within outer, for RunOperation(ref,
// true). While every operation of the chain completes synchronously, it
// returns op's outcome (val, f). Once one returns a pending Promise, val
// is a Promise of op's outcome (see nestedChain) and f is nil. abort is
// non-nil when an interrupt beyond any single operation stopped the chain.
func (r *run) runNested(outer *frame, p *scripts.Project, op *scripts.Operation, event goja.Value, depth int) (val goja.Value, f, abort *failure) {
	step, start := len(r.steps), time.Now() // runOp adds op's step first
	val, f = r.runOp(outer, p, op, event, depth, false)
	if f != nil && f.abort != nil {
		return val, f, f
	}
	if pr := pendingPromise(val); pr != nil {
		c := r.newNestedChain(p, op, event, depth)
		if err := c.waitOwn(pr, step, start, op.Script); err != nil {
			// An interrupt, or a script's Promise subclass whose species
			// lookup threw: op fails with it, its chain is not run.
			r.dropChain(c)
			f = r.failureFrom(err, op.Script)
			if f.abort != nil {
				return nil, f, f
			}
			s := &r.steps[step]
			s.Status, s.Error = f.status, f.err.Error()
			r.lastErr = f.msg
			return nil, f, nil
		}
		return c.promise, nil, nil
	}
	next := op.OnSuccess
	if f != nil {
		next = op.OnFailure
	}
	for i, name := range next {
		pending, stop, abort := r.runMember(outer, p, name, event, depth+1)
		if abort != nil {
			return val, f, abort
		}
		if stop {
			break
		}
		if pending != nil {
			c := r.newNestedChain(p, op, event, depth)
			c.val, c.f, c.next = val, f, next[i+1:]
			if err := c.waitMember(pending); err != nil {
				r.dropChain(c)
				return nil, nil, r.failureFrom(err, op.Script) // an interrupt
			}
			return c.promise, nil, nil
		}
	}
	return val, f, nil
}

// runMember runs the chain member name of p within outer, with its own
// chain. pending is the Promise of the member's chain when it has not
// ended; stop says outer's limit has been reached (the chain stops).
func (r *run) runMember(outer *frame, p *scripts.Project, name string, event goja.Value, depth int) (pending *goja.Object, stop bool, abort *failure) {
	if r.limitReached(outer) {
		return nil, true, nil
	}
	nop := findOperation(p, name)
	if nop == nil {
		r.addStep(store.Step{Operation: name, Status: store.StatusFailed, Error: "unknown operation"})
		return nil, false, nil
	}
	// A failing member is recorded in its step; the chain goes on.
	val, _, abort := r.runNested(outer, p, nop, event, depth)
	if abort != nil {
		return nil, false, abort
	}
	return pendingPromise(val), false, nil // runNested's Promise, when pending
}

// pendingPromise returns val as an object when it is a Promise still
// pending, else nil.
func pendingPromise(val goja.Value) *goja.Object {
	obj, ok := val.(*goja.Object)
	if !ok || obj.ExportType() != promiseType {
		return nil
	}
	if p, ok := obj.Export().(*goja.Promise); !ok || p.State() != goja.PromiseStatePending {
		return nil
	}
	return obj
}

func (r *run) newNestedChain(p *scripts.Project, op *scripts.Operation, event goja.Value, depth int) *nestedChain {
	c := &nestedChain{r: r, p: p, op: op, event: event, depth: depth}
	pr, resolve, reject := r.v.rt.NewPromise()
	c.promise, c.resolve, c.reject = r.v.rt.ToValue(pr).(*goja.Object), resolve, reject
	r.chains = append(r.chains, c)
	return c
}

// waitOwn makes c wait for pr, the Promise op returned; op's step (index
// step) is running until it settles.
func (c *nestedChain) waitOwn(pr *goja.Object, step int, start time.Time, file string) error {
	r := c.r
	if err := c.then(pr, func(ok bool, v goja.Value) error { return c.ownSettled(ok, v) }); err != nil {
		return err
	}
	c.own, c.step, c.start, c.file = true, step, start, file
	r.steps[step].Status = store.StatusRunning
	r.waiting = append(r.waiting, c)
	return nil
}

// waitMember makes c wait for pending, the Promise of a member's chain
// (never seen by a script), before its next member; c handles its
// rejection (the member's step records it). Only an interrupt makes it
// fail.
func (c *nestedChain) waitMember(pending *goja.Object) error {
	c.own = false
	return c.then(pending, func(bool, goja.Value) error { return c.proceed() })
}

// then calls settled(fulfilled, value) once pr settles, from a callback of
// the run's event loop (the reaction only queues it: no script runs inside
// a Promise job of ours).
func (c *nestedChain) then(pr *goja.Object, settled func(bool, goja.Value) error) error {
	r := c.r
	react := func(ok bool) goja.Value {
		return r.v.rt.ToValue(func(call goja.FunctionCall) goja.Value {
			v := call.Argument(0)
			r.eventLoop().register()(func() error { return settled(ok, v) })
			return goja.Undefined()
		})
	}
	_, err := r.v.then(pr, react(true), react(false))
	return err
}

// ownSettled runs on the loop when the Promise c waits for settles: the
// operation's step ends with its outcome (a rejection fails it with the
// reason's file:line:col, as a top-level handler's), then the chain goes
// on.
func (c *nestedChain) ownSettled(fulfilled bool, v goja.Value) error {
	var f *failure
	if !fulfilled {
		_, err := c.r.v.thrower(goja.Undefined(), v)
		if f = c.r.failureFrom(err, c.file); f.abort != nil {
			return f.abort
		}
	}
	c.ownEnded(f, v)
	return c.proceed()
}

// ownEnded ends the called operation's step, which c waits for, with f
// (nil: it succeeded); v is its value or its rejection's reason. Its
// outcome picks the members to run.
func (c *nestedChain) ownEnded(f *failure, v goja.Value) {
	r := c.r
	if i := slices.Index(r.waiting, c); i >= 0 {
		r.waiting = slices.Delete(r.waiting, i, i+1)
	}
	c.own = false
	s := &r.steps[c.step]
	s.DurationMs = store.Millis(time.Since(c.start))
	s.Status = store.StatusSucceeded
	if f == nil {
		c.val, c.next = v, c.op.OnSuccess
		return
	}
	s.Status, s.Error = f.status, f.err.Error()
	r.lastErr = f.msg
	c.f, c.reason, c.next = f, v, c.op.OnFailure
}

// proceed runs the chain's next members, on the loop, within the
// operation now executing (the top-level one), until one returns a
// pending Promise or none is left; then it settles RunOperation's
// Promise.
func (c *nestedChain) proceed() error {
	r := c.r
	outer := r.frames[len(r.frames)-1]
	for len(c.next) > 0 {
		name := c.next[0]
		c.next = c.next[1:]
		pending, stop, abort := r.runMember(outer, c.p, name, c.event, c.depth+1)
		if abort != nil {
			return abort.abort
		}
		if stop {
			break
		}
		if pending != nil {
			return c.waitMember(pending)
		}
	}
	return c.finish()
}

// finish settles RunOperation's Promise with the called operation's
// outcome: its value, its rejection's reason, or an OperationError.
func (c *nestedChain) finish() error {
	c.r.dropChain(c)
	switch {
	case c.f == nil:
		return c.resolve(c.val)
	case c.reason != nil:
		return c.reject(c.reason)
	default:
		return c.reject(c.r.v.operationError(c.op.Name, c.f))
	}
}

// dropChain forgets c, ended.
func (r *run) dropChain(c *nestedChain) {
	if i := slices.Index(r.chains, c); i >= 0 {
		r.chains = slices.Delete(r.chains, i, i+1)
	}
}

// abandonWait is called when the loop has nothing left pending: the
// Promise the latest waiting chain waits for can never settle. Its step
// fails (promise never settled) and its chain goes on from a callback. It
// reports false when no chain waits for an operation's Promise.
func (r *run) abandonWait() bool {
	if len(r.waiting) == 0 {
		return false
	}
	c := r.waiting[len(r.waiting)-1]
	r.eventLoop().register()(func() error {
		c.ownEnded(plainFailure(fmt.Errorf("%s: promise never settled", c.file)), goja.Undefined())
		return c.proceed()
	})
	r.waiting = r.waiting[:len(r.waiting)-1]
	return true
}

// endChains runs when a top-level operation has ended: the steps of nested
// chains still waiting end with err, why the operation ended first.
func (r *run) endChains(err error) {
	status, why := store.StatusFailed, "the operation that ran it failed first"
	var ie *goja.InterruptedError
	if errors.As(err, &ie) {
		if cause, ok := ie.Value().(*interruptCause); ok {
			status, why = cause.status, cause.err.Error()
		}
	}
	for _, c := range r.chains {
		if c.own && r.steps[c.step].Status == store.StatusRunning {
			s := &r.steps[c.step]
			s.DurationMs = store.Millis(time.Since(c.start))
			s.Status, s.Error = status, fmt.Sprintf("%s: promise not settled: %s", c.file, why)
		}
	}
	r.chains, r.waiting = nil, nil
}

// operationError is the Error RunOperation(ref, true) throws, or rejects
// its Promise with, when the called operation fails: f's message, with
// `operation` and `status`.
func (v *vm) operationError(name string, f *failure) *goja.Object {
	obj, err := v.rt.New(v.errorCtor, v.rt.ToValue(f.msg))
	if err != nil {
		panic(v.rt.NewGoError(err))
	}
	_ = obj.Set("operation", name)
	_ = obj.Set("status", f.status)
	return obj
}
