package runtime

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dop251/goja"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// run is the state of one chain on one runtime: what the host functions of
// the runtime read while the chain executes. Only the run's goroutine touches
// it, except memKilled (set by the watchdog) and what mu guards (read by
// the timers of the limits).
type run struct {
	e   *Engine
	v   *vm
	ctx context.Context
	inv Invocation

	vars       *goja.Object // made on first use when inv.Vars is empty (see varsObject)
	logs       []store.LogLine
	logDropped int
	steps      []store.Step
	lastErr    string

	// mu orders the limits' timers and the end of ctx (they interrupt the
	// runtime) with frames starting and ending: an interrupt is issued
	// only for a frame still executing, and is visible to its end.
	mu       sync.Mutex
	frames   []*frame // operations executing, innermost last; changed under mu
	frameBuf [4]*frame

	raised    *goja.Object // Error thrown by the latest RaiseError
	raisedMsg string

	// lazy are the event's fields not built yet (see lazy.go).
	lazy    []lazyField
	lazyBuf [4]lazyField

	memKilled atomic.Bool
	// allocated counts the bytes of the large allocations the guards let
	// through (guard.go): the watchdog's measure of how much the run grew.
	allocated atomic.Uint64
	// encodeTop says the triggered operation's result is encoded into
	// result (Engine.Run; a filter's is not).
	encodeTop bool
	result    []byte
	watched   tracked // the watchdog's record (see watchdog.track)

	// secretCache holds the secrets read, by project and name, and
	// secretValues their values, for redaction (settings.go).
	secretCache  map[string]secretRead
	secretValues []string

	// loop is the run's event loop (loop.go), made on its first
	// asynchronous call; set and cleared under mu (the limits wake it).
	loop *loop
	// holdsWorker says the run holds one of Config.Workers.
	holdsWorker bool
	// unhandled are the rejected Promises no handler has seen yet.
	unhandled []*goja.Promise
	// chains are the nested chains not ended (nested.go), and waiting
	// those of them waiting for their called operation's Promise, latest
	// last. Both are emptied when a top-level operation ends.
	chains  []*nestedChain
	waiting []*nestedChain

	// timerLeft is set when a frame's timer could not be stopped (its
	// function has started): the run must not be reused (see release).
	timerLeft bool

	// first is the frame of the run's first top-level operation or filter
	// (most runs have no other), and firstTimer its timer: both live as
	// long as the run is reused, and the timer is Reset for each run (see
	// newFrame, push). A new frame and AfterFunc timer per run were 3 of a
	// listener run's 43 allocations and a tenth of its bytes.
	first      frame
	firstUsed  bool
	firstTimer *time.Timer
}

// frame is one executing operation. Its limit is reached when its own
// deadline passes or its parent ends: the enclosing operation (outer) or,
// for a top-level operation, the run's context. A frame has no
// context.Context of its own until a host function needs one (opContext):
// its deadline is a timer, and the run's context is watched once per run.
type frame struct {
	outer    *frame // the operation that called this one; nil at the top level
	project  *scripts.Project
	op       *scripts.Operation
	event    goja.Value
	depth    int
	deadline time.Time
	timer    *time.Timer // calls run.expire at deadline; nil when the parent's is earlier

	// Guarded by run.mu.
	expired  bool // its own deadline passed while its parent had not ended
	finished bool // the operation has ended: its timer does nothing

	// The operation's context (opContext), made on first use; only the
	// run's goroutine touches these.
	ctx    context.Context
	cancel context.CancelFunc
}

// interruptCause is the value given to goja's Interrupt.
type interruptCause struct {
	frame  *frame // the frame whose own limit fired; nil for memory
	err    error
	status string
}

// String is what goja's InterruptedError.Error says of the cause: our own
// message, never a Go value.
func (c *interruptCause) String() string { return c.err.Error() }

// failure is a failed operation.
type failure struct {
	err    error  // for Result.Err and the step
	status string // store.StatusFailed or StatusTimedOut
	msg    string // bare message, for JS errors and GetLastError
	// abort is set when the runtime was interrupted for a reason beyond the
	// failing operation (memory limit, run context, an enclosing timeout):
	// the chain stops and the interrupt keeps propagating.
	abort *goja.InterruptedError
}

// newRun makes v's current run. The engine's watchdog watches ctx while
// the run is tracked: the end of ctx interrupts the top-level operation
// executing (see contextEnded).
func newRun(e *Engine, v *vm, ctx context.Context, inv Invocation) *run {
	r := v.spare
	v.spare = nil
	if r == nil {
		r = new(run)
	}
	r.e, r.v, r.ctx, r.inv = e, v, ctx, inv
	r.frames = r.frameBuf[:0]
	r.lazy = r.lazyBuf[:0]
	v.cur = r
	if len(inv.Vars) > 0 {
		r.vars = v.rt.NewObject()
		for _, k := range slices.Sorted(maps.Keys(inv.Vars)) { // as toJS: the same order every run
			_ = r.vars.Set(k, v.toJS(inv.Vars[k]))
		}
	}
	return r
}

// release ends the run once the engine is done with it (untracked, its
// steps and logs taken): the runtime's next run reuses it (a run is ~700
// bytes, a sixth of a listener run's allocations). It is zeroed, so that a
// pooled runtime keeps none of its event, project or values alive. A run
// that a frame's timer may still reach is left as it is: one of its
// timers could not be stopped, or a frame never ended (a panic). A run
// whose runtime is broken is zeroed but not reused.
func (r *run) release() {
	v := r.v
	r.endLoop()
	clear(v.lazyHeaders)
	switch {
	case r.timerLeft || len(r.frames) > 0:
		return
	case v.broken:
		// Not reused, but zeroed all the same: a stopped timer stays in
		// the timer heap for a while, and its function refers to r; a
		// discarded runtime must not stay reachable through it.
		*r = run{}
		return
	}
	t := r.firstTimer // stopped: end stopped it, or it never started
	*r = run{firstTimer: t}
	v.spare = r
}

// newFrame returns a zeroed frame for an operation within outer: the
// run's first frame for its first top-level operation, else a new one.
// The first frame is never used twice in a run, so that an interrupt
// cause naming it cannot be taken for a later operation's.
func (r *run) newFrame(outer *frame) *frame {
	if outer == nil && !r.firstUsed {
		r.firstUsed = true
		return &r.first
	}
	return new(frame)
}

// varsObject returns the chain variables' object. Without initial vars it
// is an empty object made on first use: most chains never read it.
func (r *run) varsObject() *goja.Object {
	if r.vars == nil {
		r.vars = r.v.rt.NewObject()
	}
	return r.vars
}

// killMemory interrupts the run for ErrMemoryLimit. Called by the watchdog
// while the run is tracked.
func (r *run) killMemory() {
	r.memKilled.Store(true)
	r.v.rt.Interrupt(&interruptCause{err: fmt.Errorf("%w: heap above %d bytes", ErrMemoryLimit, r.e.cfg.MemoryLimit), status: store.StatusFailed})
	r.mu.Lock()
	r.wakeLoop()
	r.mu.Unlock()
}

// top runs the triggered operation's chain and fills res. The triggered
// operation's result is encoded while that operation's frame is still
// executing (see runOp): toJSON, getters and Proxy traps run under its
// time limit, before its onSuccess chain.
func (r *run) top(op *scripts.Operation, res *Result) {
	event := r.eventToJS(r.inv.Event)
	r.encodeTop = true
	_, f, _ := r.runChain(nil, r.inv.Project, op, event, 0, true)
	if f != nil {
		res.Status, res.Err = f.status, f.err
		return
	}
	res.Status, res.JSON = store.StatusSucceeded, r.result
}

// isTriggered reports whether fr is the triggered operation of a run whose
// result must be encoded: the first top-level operation of the chain.
func (r *run) isTriggered(fr *frame) bool {
	return r.encodeTop && fr.outer == nil && fr.depth == 0
}

// encodeResult encodes val, the triggered operation's result, into
// r.result, within fr (still executing). An interrupt during the encoding
// (fr's timeout, the memory watchdog, the run's context) is a failure in
// our words; the runtime is then discarded (failureFrom marks it broken).
func (r *run) encodeResult(fr *frame, val goja.Value) *failure {
	out, err := r.v.encodeJSON(val)
	if err == nil {
		r.result = out
		return nil
	}
	name := fr.op.Name
	var so *goja.StackOverflowError
	if errors.As(err, &so) {
		// Caught outside any goja call (which would have reset the
		// runtime's state after it): do not reuse the runtime.
		r.v.broken = true
		return r.failureFrom(so, fr.op.Script) // where the script recursed
	}
	var ie *goja.InterruptedError
	if !errors.As(err, &ie) {
		return plainFailure(fmt.Errorf("operation %q: %w", name, err))
	}
	f := r.failureFrom(ie, fr.op.Script)
	if c, ok := ie.Value().(*interruptCause); ok && c.frame == fr {
		f.err = fmt.Errorf("%w: operation %q exceeded its %s timeout while encoding its result", ErrTimeout, name, fr.op.EffectiveTimeout())
	} else {
		f.err = fmt.Errorf("operation %q, while encoding its result: %w", name, f.err)
	}
	f.msg = f.err.Error()
	return f
}

// runChain runs op, then its onSuccess or onFailure operations in order,
// within outer (nil: at the top level, within the run's context; nested
// chains are runNested's). val and f are op's own outcome; abort is
// non-nil when an interrupt beyond any single operation stopped the chain
// (it must keep propagating).
func (r *run) runChain(outer *frame, p *scripts.Project, op *scripts.Operation, event goja.Value, depth int, settle bool) (val goja.Value, f, abort *failure) {
	val, f = r.runOp(outer, p, op, event, depth, settle)
	if f != nil && f.abort != nil {
		return val, f, f
	}
	next := op.OnSuccess
	if f != nil {
		next = op.OnFailure
	}
	for _, name := range next {
		if r.limitReached(outer) {
			break
		}
		nop := findOperation(p, name)
		if nop == nil {
			r.addStep(store.Step{Operation: name, Status: store.StatusFailed, Error: "unknown operation"})
			continue
		}
		// A failing chain member is recorded in its step; the chain goes on.
		if _, _, na := r.runChain(outer, p, nop, event, depth+1, true); na != nil {
			return val, f, na
		}
	}
	return val, f, nil
}

func (r *run) addStep(s store.Step) int {
	r.steps = append(r.steps, s)
	return len(r.steps) - 1
}

// runOp runs one operation, within outer, under its own timeout. settle
// says whether a still-pending Promise result is a failure (true) or
// returned as is.
func (r *run) runOp(outer *frame, p *scripts.Project, op *scripts.Operation, event goja.Value, depth int, settle bool) (val goja.Value, f *failure) {
	name := op.Name
	if p != r.inv.Project {
		name = p.Name + "/" + op.Name
	}
	if depth > maxChainDepth {
		return nil, r.failStep(name, fmt.Errorf("operation %q: chain deeper than %d operations (cycle?)", name, maxChainDepth))
	}
	if len(r.steps) >= maxSteps {
		return nil, r.failStep(name, fmt.Errorf("operation %q: more than %d operations in one run", name, maxSteps))
	}
	start := time.Now()
	fr := r.newFrame(outer)
	fr.outer, fr.project, fr.op, fr.event, fr.depth = outer, p, op, event, depth
	if cause := r.begin(fr, start); cause != nil {
		f := r.failStep(name, fmt.Errorf("operation %q not started: %w", name, cause))
		f.status = store.StatusTimedOut
		r.steps[len(r.steps)-1].Status = f.status
		return nil, f
	}
	idx := r.addStep(store.Step{Operation: name, Status: store.StatusRunning})

	val, f = r.execOp(fr, settle)
	if f == nil && r.isTriggered(fr) {
		f = r.encodeResult(fr, val)
	}

	reached := r.end(fr)
	if f != nil && f.abort != nil {
		if c, ok := f.abort.Value().(*interruptCause); ok && c.frame == fr {
			f.abort = nil // our own limit: an ordinary failure of this operation
			r.reassert()
		}
	} else if reached {
		r.reassert() // a limit was reached after the script ended
	}

	s := &r.steps[idx]
	s.DurationMs = store.Millis(time.Since(start))
	s.Status = store.StatusSucceeded
	if f != nil {
		s.Status, s.Error = f.status, f.err.Error()
		r.lastErr = f.msg
	}
	return val, f
}

// begin makes fr, starting at start, the innermost frame and starts its
// timer, unless fr's parent has ended: then it returns the parent's
// context.Cause and fr is not started.
func (r *run) begin(fr *frame, start time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cause := r.endCause(fr.outer); cause != nil {
		return cause
	}
	r.push(fr, start)
	return nil
}

// push makes fr the innermost frame and starts its timer. As with
// context.WithDeadline, a frame whose parent has an earlier deadline has
// none of its own (and no timer): it ends with its parent. r.mu must be
// held.
func (r *run) push(fr *frame, start time.Time) {
	timeout := fr.op.EffectiveTimeout()
	fr.deadline = start.Add(timeout)
	r.frames = append(r.frames, fr)
	if d, ok := r.deadline(fr.outer); ok && d.Before(fr.deadline) {
		fr.deadline = d
		return
	}
	if fr != &r.first {
		fr.timer = time.AfterFunc(timeout, func() { r.expire(fr) })
		return
	}
	if r.firstTimer == nil {
		r.firstTimer = time.AfterFunc(timeout, func() { r.expire(&r.first) })
	} else {
		r.firstTimer.Reset(timeout) // stopped (see release)
	}
	fr.timer = r.firstTimer
}

// deadline is fr's deadline (fr nil: the run context's), as the Deadline
// of its context would say.
func (r *run) deadline(fr *frame) (time.Time, bool) {
	if fr == nil {
		return r.ctx.Deadline()
	}
	return fr.deadline, true
}

// end ends fr, the innermost frame: after it, no limit interrupts the
// runtime on fr's behalf. It reports whether fr's limit had been reached
// (an interrupt for fr, or for an enclosing limit, may be set).
func (r *run) end(fr *frame) (reached bool) {
	r.mu.Lock()
	fr.finished = true
	reached = r.endCause(fr) != nil
	r.frames[len(r.frames)-1] = nil
	r.frames = r.frames[:len(r.frames)-1]
	r.mu.Unlock()
	if fr.timer != nil && !fr.timer.Stop() {
		r.timerLeft = true // expire may still be running (it finds fr finished)
	}
	fr.event = nil // a stopped timer refers to fr for a while: keep no JS value alive
	if fr.cancel != nil {
		fr.cancel()
	}
	return reached
}

// expire runs on fr's timer at its deadline: fr's own limit is reached,
// unless fr has ended or its parent ended first (the parent's end is
// reported by the enclosing frame, or by contextEnded).
func (r *run) expire(fr *frame) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if fr.finished || r.endCause(fr.outer) != nil {
		return
	}
	fr.expired = true
	r.v.rt.Interrupt(r.causeFor(fr))
	r.wakeLoop()
}

// interruptTop raises the interrupt of the top-level operation's limit
// (its timeout, or the end of the run's context) at once, for a host call
// that saw the operation's context end before the limit's timer or the
// watchdog said so; it returns the resulting error. Called from the run's
// loop, with no JavaScript on the stack (see raiseAtRest).
func (r *run) interruptTop() error {
	r.mu.Lock()
	if len(r.frames) > 0 {
		fr := r.frames[0]
		if c := r.causeFor(fr); c != nil {
			if c.frame == fr {
				fr.expired = true
			}
			r.v.rt.Interrupt(c)
		}
	}
	r.mu.Unlock()
	return r.raiseAtRest()
}

// contextEnded runs on the watchdog's goroutine once it sees the run's
// context ended (within a watchdogPeriod): it interrupts the top-level
// operation executing, unless that operation's own timeout came first.
// Polling costs nothing per run, where context.AfterFunc cost an eighth of a
// listener run's allocations (the callback, and the children map and Done
// channel of the delivery's context).
//
// It reports whether the end has been dealt with: false while no operation
// is executing (none will start: begin refuses), so that the watchdog
// tries again on its next tick.
func (r *run) contextEnded() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.frames) == 0 {
		return false
	}
	if !r.frames[0].expired {
		r.v.rt.Interrupt(r.causeFor(r.frames[0]))
		r.wakeLoop()
	}
	return true
}

// endCause is what context.Cause would say of fr's context (fr nil: the
// run's): nil while fr's limit has not been reached, DeadlineExceeded when
// it, or an enclosing frame, timed out first, else the run context's
// cause. r.mu must be held.
func (r *run) endCause(fr *frame) error {
	for ; fr != nil; fr = fr.outer {
		if fr.expired { // only set while the parent had not ended
			return context.DeadlineExceeded
		}
	}
	return context.Cause(r.ctx)
}

// limitReached reports whether fr's limit (fr nil: the run context's) has
// been reached.
func (r *run) limitReached(fr *frame) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.endCause(fr) != nil
}

// opContext returns fr's context.Context, for host functions that pass one
// on (I/O, dispatch), made on first use: derived from the parent's, it
// ends at fr's deadline and is cancelled when fr ends.
func (r *run) opContext(fr *frame) context.Context {
	if fr.ctx == nil {
		parent := r.ctx
		if fr.outer != nil {
			parent = r.opContext(fr.outer)
		}
		fr.ctx, fr.cancel = context.WithDeadline(parent, fr.deadline)
	}
	return fr.ctx
}

// causeFor decides what interrupt, if any, the end of fr's limit means.
// Enclosing frames report their own limits, so a nested frame whose parent
// ended gives nil. r.mu must be held.
func (r *run) causeFor(fr *frame) *interruptCause {
	if r.endCause(fr.outer) == nil {
		return &interruptCause{frame: fr, status: store.StatusTimedOut,
			err: fmt.Errorf("%w: operation %q exceeded its %s timeout", ErrTimeout, fr.op.Name, fr.op.EffectiveTimeout())}
	}
	if fr.outer == nil {
		return runInterrupted(r.ctx)
	}
	return nil
}

// runInterrupted is the interrupt for the end of the run's context.
func runInterrupted(ctx context.Context) *interruptCause {
	return &interruptCause{status: store.StatusTimedOut, err: fmt.Errorf("run interrupted: %w", context.Cause(ctx))}
}

// reassert clears the runtime's interrupt flag and sets it again if an
// enclosing limit has been reached meanwhile.
func (r *run) reassert() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.v.rt.ClearInterrupt()
	if r.memKilled.Load() {
		r.v.rt.Interrupt(&interruptCause{err: fmt.Errorf("%w: heap above %d bytes", ErrMemoryLimit, r.e.cfg.MemoryLimit), status: store.StatusFailed})
		return
	}
	for _, fr := range r.frames {
		if r.endCause(fr) != nil {
			if c := r.causeFor(fr); c != nil {
				r.v.rt.Interrupt(c)
				return
			}
		}
	}
}

func (r *run) failStep(name string, err error) *failure {
	r.addStep(store.Step{Operation: name, Status: store.StatusFailed, Error: err.Error()})
	r.lastErr = err.Error()
	return &failure{err: err, status: store.StatusFailed, msg: err.Error()}
}

// rollbackCause says which operation rolled back and, in an onFailure
// chain, the failure that led there (it becomes the dead letter's cause).
func (r *run) rollbackCause(opName string) error {
	if r.lastErr != "" {
		return fmt.Errorf("%s (rolled back by operation %q)", r.redact(r.lastErr), opName)
	}
	return fmt.Errorf("rolled back by operation %q", opName)
}

func plainFailure(err error) *failure {
	return &failure{err: err, status: store.StatusFailed, msg: err.Error()}
}

// execOp executes fr's operation body.
func (r *run) execOp(fr *frame, settle bool) (goja.Value, *failure) {
	op := fr.op
	if op.Type == scripts.TypeAcknowledge {
		if err := r.acknowledge(r.opContext(fr), op.Action, r.rollbackCause(op.Name)); err != nil {
			return nil, plainFailure(fmt.Errorf("operation %q: %w", op.Name, err))
		}
		return goja.Undefined(), nil
	}
	prog := fr.project.Programs[op.Script]
	if prog == nil {
		return nil, plainFailure(fmt.Errorf("operation %q: script %q is not compiled", op.Name, op.Script))
	}
	handler, params, info, err := r.v.function(prog, fr.project.Files[op.Script], "handle")
	if err != nil {
		return nil, r.failureFrom(err, op.Script)
	}
	ret, err := handler(goja.Undefined(), fr.event, r.ctxArg(fr, info, params))
	if fr.outer == nil {
		err = r.await(ret, err)
	}
	if err != nil {
		return nil, r.failureFrom(err, op.Script)
	}
	return r.settle(ret, op.Script, settle)
}

// await runs the event loop of a top-level operation whose handler
// returned ret (or failed with err) until nothing is pending, then fails on
// a Promise rejected with no handler (other than ret, the operation's own
// result, which settle reads). The loop ends with it, and so do the steps
// of nested chains still waiting. Nested operations (RunOperation) return
// a Promise to the caller, whose loop runs it: no loop can run while
// JavaScript is on the stack (see nested.go).
func (r *run) await(ret goja.Value, err error) (werr error) {
	defer func() {
		r.endChains(werr)
		r.endLoop()
	}()
	if err != nil {
		r.unhandled = r.unhandled[:0] // the operation failed anyway: none reaches the next
		return err
	}
	if err := r.drain(); err != nil {
		return err
	}
	return r.unhandledRejection(ret)
}

// settle resolves a Promise result: fulfilled gives its value, rejected a
// failure, pending a failure when mustSettle (else the Promise itself).
func (r *run) settle(ret goja.Value, file string, mustSettle bool) (goja.Value, *failure) {
	obj, ok := ret.(*goja.Object)
	if !ok || obj.ExportType() != promiseType {
		return ret, nil
	}
	p, ok := obj.Export().(*goja.Promise)
	if !ok {
		return ret, nil
	}
	switch p.State() {
	case goja.PromiseStateFulfilled:
		return p.Result(), nil
	case goja.PromiseStateRejected:
		r.handled(p) // its rejection is this failure, not an unhandled one
		_, err := r.v.thrower(goja.Undefined(), p.Result())
		return nil, r.failureFrom(err, file)
	default:
		if !mustSettle {
			return ret, nil
		}
		return nil, plainFailure(fmt.Errorf("%s: promise never settled", file))
	}
}

var promiseType = reflect.TypeFor[*goja.Promise]()

// failureFrom maps an error returned by goja to a failure.
func (r *run) failureFrom(err error, file string) *failure {
	var ie *goja.InterruptedError
	if errors.As(err, &ie) {
		var rest *restingInterrupt
		if !errors.As(err, &rest) {
			r.v.broken = true // interrupted while a script executed: not reused
		}
		c, _ := ie.Value().(*interruptCause)
		if c == nil {
			c = &interruptCause{err: fmt.Errorf("interrupted: %v", ie.Value()), status: store.StatusFailed}
		}
		return &failure{err: c.err, status: c.status, msg: c.err.Error(), abort: ie}
	}
	var so *goja.StackOverflowError
	if errors.As(err, &so) {
		se := r.scriptError(so.Stack(), nil, file)
		se.Message = "RangeError: " + ErrStackOverflow.Error()
		return &failure{err: &sentinelError{sentinel: ErrStackOverflow, se: se}, status: store.StatusFailed, msg: se.Message}
	}
	var ex *goja.Exception
	if errors.As(err, &ex) {
		se := r.scriptError(ex.Stack(), ex.Value(), file)
		msg := se.Message
		if obj, ok := ex.Value().(*goja.Object); ok && obj.ClassName() == "Error" && obj != r.raised {
			msg = r.v.safeString(obj.Get("message"))
		}
		return &failure{err: se, status: store.StatusFailed, msg: msg}
	}
	return plainFailure(err)
}

// sentinelError is a ScriptError that also matches a sentinel with errors.Is.
type sentinelError struct {
	sentinel error
	se       *scripts.ScriptError
}

func (e *sentinelError) Error() string   { return e.se.Error() }
func (e *sentinelError) Unwrap() []error { return []error{e.sentinel, e.se} }

// scriptError locates an exception in the user's file: the first frame of a
// user script, with the wrapper's column shift removed.
func (r *run) scriptError(stack []goja.StackFrame, val goja.Value, file string) *scripts.ScriptError {
	se := &scripts.ScriptError{File: file}
	var b strings.Builder
	found := false
	for _, f := range stack {
		if !isUserFrame(f) {
			continue
		}
		pos := f.Position()
		line, col := scripts.UserPosition(pos.Line, pos.Column)
		if !found {
			found = true
			se.File, se.Line, se.Column = f.SrcName(), line, col
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "at %s (%s:%d:%d)", f.FuncName(), f.SrcName(), line, col)
	}
	se.Stack = b.String()
	switch {
	case val == nil:
	case r.raised != nil && val == goja.Value(r.raised):
		se.Message = r.raisedMsg
	default:
		se.Message = r.v.safeString(val)
	}
	return se
}

// loadModule evaluates a wrapped program and returns its function named
// want ("handle" or "filter"), following scripts/wrap.go's rules; a filter
// script without filter falls back to its handle. params is the function's
// declared parameter count (its length).
func (v *vm) loadModule(prog *goja.Program, want string) (fn goja.Callable, params int, err error) {
	wrapper, err := v.wrapper(prog)
	if err != nil {
		return nil, 0, err
	}
	exports, module := v.rt.NewObject(), v.rt.NewObject()
	_ = module.Set("exports", exports)
	ret, err := wrapper(goja.Undefined(), exports, module)
	if err != nil {
		return nil, 0, err
	}
	me := module.Get("exports")
	function := func(val goja.Value) (goja.Callable, int, bool) {
		fn, ok := goja.AssertFunction(val)
		if !ok {
			return nil, 0, false
		}
		return fn, int(val.(*goja.Object).Get("length").ToInteger()), true
	}
	field := func(o goja.Value, name string) (goja.Callable, int, bool) {
		obj, ok := o.(*goja.Object)
		if !ok {
			return nil, 0, false
		}
		return function(obj.Get(name))
	}
	if want == "filter" {
		for _, src := range []goja.Value{me, exports, ret} {
			if fn, n, ok := field(src, "filter"); ok {
				return fn, n, nil
			}
		}
	}
	if fn, n, ok := function(me); ok {
		return fn, n, nil
	}
	for _, src := range []goja.Value{me, exports, ret} {
		if fn, n, ok := field(src, "handle"); ok {
			return fn, n, nil
		}
	}
	return nil, 0, fmt.Errorf("script defines no %s function", want)
}

// ctxArg is the second argument of a script's function: the ctx object,
// or undefined when the function cannot see it (it declares one parameter
// and its script never mentions arguments or a rest parameter): building
// ctx was a tenth of a small webhook's allocations.
func (r *run) ctxArg(fr *frame, info progInfo, params int) goja.Value {
	if params >= 2 || info.readsArguments {
		return r.ctxObject(fr)
	}
	return goja.Undefined()
}

// maxWrappers bounds vm.wrappers (programs of old deployments pile up).
const maxWrappers = 256

// wrapper returns prog's module wrapper function. Evaluating prog only
// creates that function, so it is done once per runtime and program; each
// call of the wrapper still evaluates the module afresh in a new scope. The
// wrapper and its prototype are frozen: a sloppy script can reach them
// (arguments.callee) and must not leave state on them for later runs.
func (v *vm) wrapper(prog *goja.Program) (goja.Callable, error) {
	if fn, ok := v.wrappers[prog]; ok {
		return fn, nil
	}
	w, err := v.rt.RunProgram(prog)
	if err != nil {
		return nil, err
	}
	fn, ok := goja.AssertFunction(w)
	if !ok {
		return nil, errors.New("script did not evaluate to the module wrapper")
	}
	obj := w.(*goja.Object)
	if _, err := v.freeze(goja.Undefined(), obj.Get("prototype")); err != nil {
		return nil, err
	}
	if _, err := v.freeze(goja.Undefined(), obj); err != nil {
		return nil, err
	}
	if len(v.wrappers) >= maxWrappers {
		clear(v.wrappers)
	}
	v.wrappers[prog] = fn
	return fn, nil
}

// ctxObject builds the handler's second argument.
func (r *run) ctxObject(fr *frame) *goja.Object {
	rt := r.v.rt
	c := rt.NewObject()
	_ = c.Set("run", r.inv.RunID)
	_ = c.Set("project", fr.project.Name)
	_ = c.Set("operation", fr.op.Name)
	_ = c.Set("trigger", r.inv.Trigger)
	if m := r.inv.Message; m != nil {
		mo := rt.NewObject()
		if ev, ok := fr.event.(*goja.Object); ok {
			for _, k := range ev.Keys() {
				r.copyEventField(mo, ev, k)
			}
		}
		_ = mo.Set("id", m.ID())
		_ = mo.Set("commit", r.v.msgCommit)
		_ = mo.Set("rollback", r.v.msgRollbk)
		_ = c.Set("message", mo)
	}
	return c
}

// acknowledge commits or rolls back the run's delivery.
func (r *run) acknowledge(ctx context.Context, action string, cause error) error {
	m := r.inv.Message
	if m == nil {
		return errors.New("acknowledge: this run handles no message")
	}
	switch {
	case strings.EqualFold(action, scripts.ActionCommit):
		if err := m.Commit(ctx); err != nil {
			return fmt.Errorf("commit message %s: %w", m.ID(), err)
		}
	case strings.EqualFold(action, scripts.ActionRollback):
		if err := m.Rollback(ctx, cause); err != nil {
			return fmt.Errorf("rollback message %s: %w", m.ID(), err)
		}
	default:
		return fmt.Errorf("acknowledge: unknown action %q (want %s or %s)", action, scripts.ActionCommit, scripts.ActionRollback)
	}
	return nil
}

// filter runs a filter script (Engine.Filter).
func (r *run) filter(path string) (bool, error) {
	p := r.inv.Project
	prog := p.Programs[path]
	if prog == nil {
		return false, fmt.Errorf("filter %s: script is not compiled", path)
	}
	op := &scripts.Operation{Name: "filter " + path, Script: path, Timeout: scripts.Duration(filterTimeout)}
	var pass bool
	body := func(fr *frame) (goja.Value, *failure) {
		fn, params, info, err := r.v.function(prog, p.Files[path], "filter")
		if err != nil {
			return nil, r.failureFrom(err, path)
		}
		ret, err := fn(goja.Undefined(), fr.event, r.ctxArg(fr, info, params))
		err = r.await(ret, err)
		if err != nil {
			return nil, r.failureFrom(err, path)
		}
		ret, f := r.settle(ret, path, true)
		if f == nil {
			pass = ret != nil && ret.ToBoolean()
		}
		return ret, f
	}
	_, f := r.guard(p, op, r.eventToJS(r.inv.Event), body)
	if f != nil {
		return false, fmt.Errorf("filter %s: %w", path, f.err)
	}
	return pass, nil
}

// guard runs body as a top-level frame with op's timeout (the filter path;
// operations use runOp). A runtime whose limit was reached is not reused.
func (r *run) guard(p *scripts.Project, op *scripts.Operation, event goja.Value, body func(*frame) (goja.Value, *failure)) (goja.Value, *failure) {
	fr := r.newFrame(nil)
	fr.project, fr.op, fr.event = p, op, event
	if start := time.Now(); r.begin(fr, start) != nil {
		// The run's context has ended already: body runs all the same and
		// the watchdog interrupts it, as when the context ends just as it
		// starts.
		r.mu.Lock()
		r.push(fr, start)
		r.mu.Unlock()
	}
	val, f := body(fr)
	if r.end(fr) {
		r.v.broken = true
	}
	return val, f
}
