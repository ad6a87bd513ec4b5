package runtime

import (
	"context"
	"errors"
	"sync"

	"github.com/dop251/goja"
)

// The event loop of a run, after k6's js/eventloop: a host call that waits
// (fetch, a timer) registers a pending callback on the run's goroutine,
// does its waiting on a goroutine of its own (or a Go timer), and hands
// back a function that runs on the run's goroutine, where it may touch the
// runtime (resolve a Promise, call a timer's function). The top-level
// operation ends when its handler's Promise has settled and no callback is
// pending; while it waits, the run gives its worker back (Config.Workers).
//
// A run makes its loop on its first asynchronous call, so a run that makes
// none allocates nothing for it.

// maxPending bounds the callbacks one run may have pending (fetches in
// flight, timers set): past it the call throws a RangeError.
const maxPending = 10_000

// Workers bounds the runs executing JavaScript. A run holds a worker while
// its script executes and gives it back while it waits for a fetch or a
// timer. Implementations must be goroutine-safe.
type Workers interface {
	// Acquire takes a worker, blocking until one is free or ctx ends.
	Acquire(ctx context.Context) error
	// Release gives back a worker taken by Acquire.
	Release()
}

// loop is one run's event loop. ready and wake are shared with the
// goroutines doing the waiting; the rest belongs to the run's goroutine.
type loop struct {
	mu    sync.Mutex
	ready []func() error
	wake  chan struct{} // one token: something is ready, or a limit was reached

	pending int // callbacks registered and not yet run or cancelled
	timers  map[int64]*timer
	aborts  map[int64]context.CancelCauseFunc // fetches in flight, by id
	nextID  int64
}

func newLoop() *loop {
	return &loop{wake: make(chan struct{}, 1)}
}

// register reserves a pending callback and returns the function that
// queues it; that function must be called once, from any goroutine. Once
// the operation has ended (endLoop), what it queues is never run.
func (l *loop) register() (enqueue func(func() error)) {
	l.pending++
	return func(cb func() error) {
		l.mu.Lock()
		l.ready = append(l.ready, cb)
		l.mu.Unlock()
		l.poke()
	}
}

// poke wakes the loop if it is waiting. Goroutine-safe, never blocks.
func (l *loop) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// take returns the callbacks queued so far.
func (l *loop) take() []func() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	cbs := l.ready
	l.ready = nil
	return cbs
}

// hasReady reports whether a callback is queued.
func (l *loop) hasReady() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ready) > 0
}

// eventLoop returns the run's loop, made on first use. The limits' timers
// read r.loop under r.mu to wake it.
func (r *run) eventLoop() *loop {
	if r.loop == nil {
		l := newLoop()
		r.mu.Lock()
		r.loop = l
		r.mu.Unlock()
	}
	return r.loop
}

// endLoop drops the loop when a top-level operation ends: its timers stop
// and callbacks still queued never run (a failed operation's leftovers do
// not reach the next operation of the chain). Pending fetches end with the
// operation's context.
func (r *run) endLoop() {
	l := r.loop
	if l == nil {
		return
	}
	for _, t := range l.timers {
		t.t.Stop()
	}
	for _, abort := range l.aborts {
		abort(errFetchAborted)
	}
	r.mu.Lock()
	r.loop = nil
	r.mu.Unlock()
}

// wakeLoop wakes the run's loop after a limit was reached (the interrupt
// takes effect on the next JavaScript it runs). r.mu must be held.
func (r *run) wakeLoop() {
	if r.loop != nil {
		r.loop.poke()
	}
}

// drain runs the loop until no callback is pending: the operation's
// Promise has then settled, or nothing is left that could settle it. A
// nested chain still waiting for a Promise when nothing is pending has its
// step failed and goes on (abandonWait), so that it ends within the
// operation. A timer set and forgotten still runs, as in Node.js. It
// returns the uncatchable error of a limit reached meanwhile (timeout,
// memory, the run's context). Called on the run's goroutine with no
// JavaScript on the stack, so that Promise jobs run as each callback
// returns.
func (r *run) drain() error {
	for {
		l := r.loop
		if l == nil || l.pending == 0 {
			// Nothing can settle a Promise a nested chain waits for.
			if !r.abandonWait() {
				return nil
			}
			continue
		}
		cbs := l.take()
		if len(cbs) == 0 {
			r.idle(l)
			// A wake-up without a callback may be a limit. With one, the
			// callback's JavaScript raises a limit reached meanwhile.
			if !l.hasReady() {
				if err := r.raiseAtRest(); err != nil {
					return err
				}
			}
			continue
		}
		for i, cb := range cbs {
			l.pending--
			if err := cb(); err != nil {
				l.requeue(cbs[i+1:])
				return err
			}
		}
	}
}

// restingInterrupt is a limit's interrupt (timeout, the run's context)
// raised while the run's loop waited, with no JavaScript on the stack:
// every script call had returned and goja drops its job queue at an
// interrupt, so the runtime holds nothing half done and may be pooled
// again. A runtime interrupted while a script executed is discarded (see
// failureFrom): a client that hangs up on 200 waiting webhooks must not
// cost 200 runtimes to build again.
type restingInterrupt struct{ ie *goja.InterruptedError }

func (e *restingInterrupt) Error() string { return e.ie.Error() }
func (e *restingInterrupt) Unwrap() error { return e.ie }

// raiseAtRest raises the interrupt of a limit reached, if any, by calling
// into JavaScript (any call raises it) from the loop, where no script is
// executing; nil when no limit has been reached.
func (r *run) raiseAtRest() error {
	_, err := r.v.noop(goja.Undefined())
	var ie *goja.InterruptedError
	if errors.As(err, &ie) {
		return &restingInterrupt{ie: ie}
	}
	return err
}

// requeue puts back callbacks not run (an earlier one was interrupted);
// the run ends without them.
func (l *loop) requeue(cbs []func() error) {
	if len(cbs) == 0 {
		return
	}
	l.mu.Lock()
	l.ready = append(cbs, l.ready...)
	l.mu.Unlock()
}

// idle waits for the loop's next wake-up without holding a worker.
func (r *run) idle(l *loop) {
	w := r.e.cfg.Workers
	if w != nil && r.holdsWorker {
		w.Release()
		r.holdsWorker = false
	}
	<-l.wake
	if w != nil {
		// A run whose context has ended goes on without a worker: it only
		// raises its interrupt and ends.
		if err := w.Acquire(r.ctx); err == nil {
			r.holdsWorker = true
		}
	}
}

// trackRejections is the runtime's PromiseRejectionTracker: it keeps the
// current run's rejected Promises that have no handler yet.
func (v *vm) trackRejections(p *goja.Promise, op goja.PromiseRejectionOperation) {
	r := v.cur
	if r == nil {
		return
	}
	switch op {
	case goja.PromiseRejectionReject:
		r.unhandled = append(r.unhandled, p)
	case goja.PromiseRejectionHandle:
		r.handled(p)
	}
}

// handled forgets p as a rejection no handler has seen.
func (r *run) handled(p *goja.Promise) {
	for i, u := range r.unhandled {
		if u == p {
			r.unhandled = append(r.unhandled[:i], r.unhandled[i+1:]...)
			return
		}
	}
}

// unhandledRejection fails the operation on a Promise rejected with no
// handler, as Node.js does, unless it is ret, the operation's own result
// (settle reports that one). The error is the rejection's reason, thrown
// where the operation can be located.
func (r *run) unhandledRejection(ret goja.Value) error {
	own, _ := ret.(*goja.Object)
	var reason goja.Value
	for _, p := range r.unhandled {
		if own != nil && own.Export() == p {
			continue
		}
		reason = p.Result()
		break
	}
	r.unhandled = r.unhandled[:0]
	if reason == nil {
		return nil
	}
	_, err := r.v.thrower(goja.Undefined(), reason)
	return err
}
