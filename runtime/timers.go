package runtime

import (
	"math"
	"time"

	"github.com/dop251/goja"
)

// Timers: setTimeout, clearTimeout and sleep, on the run's event loop
// (loop.go). They fire within the operation's time limit or not at all:
// the limit ends the operation, and its timers with it.

// timer is a setTimeout or sleep not yet run.
type timer struct {
	t       *time.Timer
	cleared bool // clearTimeout came after it fired: its callback does nothing
}

// maxDelay bounds a timer's delay (setTimeout's own bound in browsers is
// 2^31-1 ms); a longer one fires at the operation's limit anyway.
const maxDelay = math.MaxInt32 * time.Millisecond

// jsSetTimeout is setTimeout(fn, ms = 0, ...args): fn(...args) runs on the
// run's loop after ms; it returns the timer's id for clearTimeout. An
// exception fn throws fails the operation, as an uncaught one in Node.js
// ends the process.
func (v *vm) jsSetTimeout(call goja.FunctionCall) goja.Value {
	r, _ := v.active()
	fn, ok := goja.AssertFunction(call.Argument(0))
	if !ok {
		v.throwType("setTimeout: the first argument must be a function")
	}
	var args []goja.Value
	if len(call.Arguments) > 2 {
		args = append(args, call.Arguments[2:]...)
	}
	id := r.setTimer(delayOf(call.Argument(1)), func() error {
		_, err := fn(goja.Undefined(), args...)
		return err
	})
	return v.rt.ToValue(id)
}

// jsClearTimeout is clearTimeout(id): the timer does not fire. Unknown ids
// are ignored, as in browsers.
func (v *vm) jsClearTimeout(call goja.FunctionCall) goja.Value {
	r, _ := v.active()
	l := r.loop
	if l == nil {
		return goja.Undefined()
	}
	id := call.Argument(0).ToInteger()
	t, ok := l.timers[id]
	if !ok {
		return goja.Undefined()
	}
	delete(l.timers, id)
	if t.t.Stop() {
		l.pending-- // its callback will never be queued
	} else {
		t.cleared = true // queued already: it runs and does nothing
	}
	return goja.Undefined()
}

// jsSleep is sleep(ms): a Promise fulfilled after ms.
func (v *vm) jsSleep(call goja.FunctionCall) goja.Value {
	r, _ := v.active()
	p, resolve, _ := v.rt.NewPromise()
	r.setTimer(delayOf(call.Argument(0)), func() error { return resolve(goja.Undefined()) })
	return v.rt.ToValue(p)
}

// setTimer runs fire on the run's loop after d and returns the timer's id.
func (r *run) setTimer(d time.Duration, fire func() error) int64 {
	l := r.eventLoop()
	if l.pending >= maxPending {
		r.v.throwRange("too many timers and fetches pending in one run (at most %d)", maxPending)
	}
	if l.timers == nil {
		l.timers = make(map[int64]*timer)
	}
	l.nextID++
	id := l.nextID
	t := new(timer)
	enqueue := l.register()
	l.timers[id] = t
	t.t = time.AfterFunc(d, func() {
		enqueue(func() error {
			if t.cleared {
				return nil
			}
			delete(l.timers, id)
			return fire()
		})
	})
	return id
}

// delayOf reads a delay in milliseconds as setTimeout does: missing, NaN
// or negative is 0.
func delayOf(val goja.Value) time.Duration {
	if !present(val) {
		return 0
	}
	ms := val.ToFloat()
	if math.IsNaN(ms) || ms <= 0 {
		return 0
	}
	d := time.Duration(ms * float64(time.Millisecond))
	if ms > float64(maxDelay/time.Millisecond) {
		d = maxDelay
	}
	return d
}
