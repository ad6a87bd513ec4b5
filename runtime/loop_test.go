package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/store"
)

func TestSleepAndSetTimeoutResolveWithinTheRun(t *testing.T) {
	e := newEngine(t, Config{})
	res := runOne(t, e, `async function handle() {
		const order = [];
		setTimeout((a, b) => order.push("timeout " + a + b), 5, "x", "y");
		await sleep(20);
		order.push("slept");
		return order;
	}`, nil)
	if res.Err != nil {
		t.Fatalf("run failed: %v", res.Err)
	}
	if got := res.value(); !equalJSON(got, []any{"timeout xy", "slept"}) {
		t.Fatalf("result %v, want [timeout xy slept]", got)
	}
}

func TestClearTimeoutStopsTheTimer(t *testing.T) {
	e := newEngine(t, Config{})
	res := runOne(t, e, `function handle() {
		const id = setTimeout(() => Set("fired", true), 10);
		clearTimeout(id);
		clearTimeout(12345); // unknown ids are ignored
		setTimeout(() => Set("other", true), 1);
		return 1;
	}`, nil)
	if res.Err != nil {
		t.Fatalf("run failed: %v", res.Err)
	}
}

func TestATimerSetAndForgottenStillRunsBeforeTheRunEnds(t *testing.T) {
	e := newEngine(t, Config{})
	res := runOne(t, e, `function handle() {
		setTimeout(() => log.info("late timer"), 15);
		return "returned at once";
	}`, nil)
	if res.Err != nil {
		t.Fatalf("run failed: %v", res.Err)
	}
	if !hasLog(res, "late timer") {
		t.Fatalf("logs %v lack the timer's line", res.Logs)
	}
}

func TestTheTimeoutCoversWaiting(t *testing.T) {
	e := newEngine(t, Config{})
	p := newProject(t, "p", op{name: "main", timeout: 50 * time.Millisecond, src: `async function handle() { await sleep(10000); return 1; }`})
	res := e.Run(context.Background(), Invocation{Project: p, Operation: "main", Trigger: TriggerWebhook})
	if res.Status != store.StatusTimedOut || !errors.Is(res.Err, ErrTimeout) {
		t.Fatalf("status %s, err %v; want timed_out", res.Status, res.Err)
	}
}

func TestTheRunContextEndsAWaitingRun(t *testing.T) {
	e := newEngine(t, Config{})
	p := newProject(t, "p", op{name: "main", src: `async function handle() { await sleep(10000); return 1; }`})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	res := e.Run(ctx, Invocation{Project: p, Operation: "main", Trigger: TriggerWebhook})
	if res.Status != store.StatusTimedOut {
		t.Fatalf("status %s, err %v; want timed_out", res.Status, res.Err)
	}
}

func TestAnExceptionInATimerFailsTheOperationWithItsPosition(t *testing.T) {
	e := newEngine(t, Config{})
	res := runOne(t, e, `function handle() {
	setTimeout(() => {
		throw new Error("boom in timer");
	}, 1);
	return 1;
}`, nil)
	if res.Status != store.StatusFailed {
		t.Fatalf("status %s, want failed", res.Status)
	}
	se := scriptErr(t, res.Err)
	if !strings.Contains(se.Message, "boom in timer") || se.Line != 3 {
		t.Fatalf("error %q at line %d, want boom in timer at line 3", se.Message, se.Line)
	}
}

func TestAnUnhandledRejectionFailsTheOperation(t *testing.T) {
	e := newEngine(t, Config{})
	res := runOne(t, e, `async function handle() {
	Promise.reject(new Error("nobody caught me"));
	const handled = Promise.reject(new Error("caught"));
	handled.catch(() => {});
	await sleep(1);
	return 1;
}`, nil)
	if res.Status != store.StatusFailed || !strings.Contains(res.Err.Error(), "nobody caught me") {
		t.Fatalf("status %s, err %v; want failed with the rejection", res.Status, res.Err)
	}
}

func TestTheOperationsOwnRejectionIsItsFailureOnce(t *testing.T) {
	e := newEngine(t, Config{})
	res := runOne(t, e, `async function handle() { await sleep(1); throw new Error("own failure"); }`, nil)
	if res.Status != store.StatusFailed || !strings.Contains(res.Err.Error(), "own failure") {
		t.Fatalf("status %s, err %v", res.Status, res.Err)
	}
}

func TestAPendingPromiseNothingCanSettleStillFails(t *testing.T) {
	e := newEngine(t, Config{})
	res := runOne(t, e, `function handle() { return new Promise(() => {}); }`, nil)
	if res.Status != store.StatusFailed || !strings.Contains(res.Err.Error(), "never settled") {
		t.Fatalf("status %s, err %v", res.Status, res.Err)
	}
}

func TestTimersOfAFailedOperationDoNotReachTheNextInTheChain(t *testing.T) {
	e := newEngine(t, Config{})
	p := newProject(t, "p",
		op{name: "first", onFailure: []string{"second"}, src: `function handle() { setTimeout(() => log.info("leftover"), 20); throw new Error("fail"); }`},
		op{name: "second", src: `async function handle() { await sleep(40); return 2; }`})
	res := e.Run(context.Background(), Invocation{Project: p, Operation: "first", Trigger: TriggerWebhook})
	if hasLog(res, "leftover") {
		t.Fatalf("the failed operation's timer ran: %v", res.Logs)
	}
}

// countingWorkers is a Workers of n, recording the most held at once.
type countingWorkers struct {
	sem       chan struct{}
	held, max atomic.Int32
}

func newCountingWorkers(n int) *countingWorkers { return &countingWorkers{sem: make(chan struct{}, n)} }

func (w *countingWorkers) Acquire(ctx context.Context) error {
	select {
	case w.sem <- struct{}{}:
		n := w.held.Add(1)
		for m := w.max.Load(); n > m && !w.max.CompareAndSwap(m, n); m = w.max.Load() {
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *countingWorkers) Release() { w.held.Add(-1); <-w.sem }

// barrier is a Sender whose "check" sends fail until n "arrive" sends came.
type barrier struct {
	n       int32
	arrived atomic.Int32
}

func (b *barrier) Send(_ context.Context, _ string, body []byte, _ map[string]string) error {
	if string(body) == "arrive" {
		b.arrived.Add(1)
		return nil
	}
	if b.arrived.Load() < b.n {
		return errors.New("not all here")
	}
	return nil
}

func TestAWaitingRunHoldsNoWorker(t *testing.T) {
	// 50 runs on 2 workers wait until all 50 are in progress: that can
	// only happen if a run waiting in sleep gives its worker back.
	const runs = 50
	workers := newCountingWorkers(2)
	e := newEngine(t, Config{Workers: workers, Sender: &barrier{n: runs}})
	if failed := burst(t, e, runs); failed > 0 {
		t.Fatalf("%d of %d runs failed: waiting runs held their workers", failed, runs)
	}
	if workers.held.Load() != 0 || workers.max.Load() > 2 {
		t.Fatalf("workers held: %d at the end, %d at most (of 2)", workers.held.Load(), workers.max.Load())
	}
}

// burst runs n runs at once that each wait until all n are in progress:
// the engine's Sender must be a &barrier{n: n}. It returns how many failed.
func burst(t *testing.T, e *Engine, n int) int32 {
	t.Helper()
	p := newProject(t, "p", op{name: "main", timeout: 20 * time.Second, src: `async function handle() {
		SendMessage("/queue/b", "arrive");
		for (;;) {
			try { SendMessage("/queue/b", "check"); return 1; } catch (e) { await sleep(5); }
		}
	}`})
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res := e.Run(context.Background(), Invocation{Project: p, Operation: "main", Trigger: TriggerWebhook}); res.Err != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	return failed.Load()
}

func hasLog(res Result, s string) bool {
	for _, l := range res.Logs {
		if strings.Contains(l.Message, s) {
			return true
		}
	}
	return false
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestANestedOperationsPromiseIsAwaitedByItsCaller(t *testing.T) {
	e := newEngine(t, Config{})
	p := newProject(t, "p",
		op{name: "main", src: `async function handle() { const v = await RunOperation("Slow", true); return v + 1; }`},
		op{name: "Slow", src: `async function handle() { await sleep(10); return 41; }`})
	res := e.Run(context.Background(), Invocation{Project: p, Operation: "main", Trigger: TriggerWebhook})
	if res.Err != nil || res.value() != 42.0 {
		t.Fatalf("result %v, err %v; want 42", res.value(), res.Err)
	}
}

func TestThePoolKeepsTheRuntimesABurstNeededThenTrimsThem(t *testing.T) {
	// The memory watchdog reads the whole process's heap: another test's
	// allocation could make it interrupt these runs (whose runtimes are
	// then dropped), so its limit is out of reach here.
	// All 20 runs wait until all 20 are in progress (the barrier), so that
	// each holds a runtime of its own: 20 are built.
	e := newEngine(t, Config{Runtimes: 2, MaxIdle: 40, NoPrewarm: true, MemoryLimit: 1 << 40, Sender: &barrier{n: 20}})
	if failed := burst(t, e, 20); failed > 0 {
		t.Fatalf("%d runs failed", failed)
	}
	if n := len(e.pool); n != 20 {
		t.Fatalf("after a burst of 20 waiting runs the pool holds %d idle runtimes, want 20 (building one costs ~8 ms)", n)
	}
	e.lowIdle.Store(int64(len(e.pool))) // as if no run took one for a trim period
	for range 10 {
		e.trim()
	}
	if n := len(e.pool); n != 2 {
		t.Fatalf("after trims with no run, the pool holds %d, want Runtimes (2)", n)
	}
}

func TestARejectionLeftByAFailedOperationDoesNotFailTheNext(t *testing.T) {
	e := newEngine(t, Config{})
	p := newProject(t, "p",
		op{name: "first", onFailure: []string{"second"}, src: `function handle() { Promise.reject(new Error("left over")); throw new Error("first failed"); }`},
		op{name: "second", src: `async function handle() { await sleep(1); return 2; }`})
	res := e.Run(context.Background(), Invocation{Project: p, Operation: "first", Trigger: TriggerWebhook})
	if len(res.Steps) != 2 || res.Steps[1].Status != store.StatusSucceeded {
		t.Fatalf("steps %+v: the onFailure operation should succeed", res.Steps)
	}
}

// A limit reached while a run waits (its context ended: the client hung
// up; its timeout) interrupts it with no script executing: its runtime
// goes back to the pool and serves the next run as a fresh one would. A
// runtime interrupted while a script executes is still dropped.
func TestARuntimeInterruptedWhileItsRunWaitsIsPooledAgain(t *testing.T) {
	waiting := `async function handle() { await sleep(10000); return 1; }`
	cases := map[string]struct {
		src     string
		timeout time.Duration // the operation's; else the run's context ends
		pooled  int
	}{
		"run context ends while waiting": {src: waiting, pooled: 1},
		"timeout while waiting":          {src: waiting, timeout: 50 * time.Millisecond, pooled: 1},
		"timeout while executing":        {src: `async function handle() { await sleep(1); for (;;) {} }`, timeout: 50 * time.Millisecond, pooled: 0},
	}
	for name, tt := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEngine(t, Config{NoPrewarm: true, Runtimes: 1, MemoryLimit: 1 << 40})
			p := newProject(t, "p", op{name: "main", timeout: tt.timeout, src: tt.src},
				op{name: "next", src: `async function handle() { await sleep(1); return 2; }`})
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if tt.timeout > 0 {
				ctx = context.Background()
			}
			res := e.Run(ctx, Invocation{Project: p, Operation: "main", Trigger: TriggerWebhook})
			if res.Status != store.StatusTimedOut {
				t.Fatalf("status %s, err %v; want timed_out", res.Status, res.Err)
			}
			if n := len(e.pool); n != tt.pooled {
				t.Fatalf("%d idle runtimes after the interrupted run, want %d", n, tt.pooled)
			}
			res = e.Run(context.Background(), Invocation{Project: p, Operation: "next", Trigger: TriggerWebhook})
			if res.Status != store.StatusSucceeded || string(res.JSON) != "2" {
				t.Fatalf("the next run: status %s, result %s, err %v", res.Status, res.JSON, res.Err)
			}
		})
	}
}
