package runtime

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/store"
)

// Time limits: each operation has its own timeout, which interrupts even a
// busy loop; a nested operation (RunOperation) runs within its caller's
// limit, and the run's context bounds the whole chain.

// stepStatuses lists the steps as "operation status", in the order the
// operations started.
func stepStatuses(steps []store.Step) []string {
	var out []string
	for _, s := range steps {
		out = append(out, s.Operation+" "+s.Status)
	}
	return out
}

// quick fails the test when a run took long: a limit did not interrupt.
func quick(t *testing.T, start time.Time) {
	t.Helper()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %s: the limit did not interrupt the script", d)
	}
}

func TestNestedTimeoutIsTheNestedOperations(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	p := newProject(t, "p",
		op{name: "main", src: `function handle() {
			try { RunOperation("slow") } catch (e) { return [e.operation, e.status, e.message] }
		}`, timeout: time.Minute},
		op{name: "slow", src: `function handle() { for (;;) {} }`, timeout: 100 * time.Millisecond},
	)
	start := time.Now()
	res := e.Run(context.Background(), Invocation{Project: p, Operation: "main"})
	quick(t, start)
	want := []any{"slow", store.StatusTimedOut, `operation timed out: operation "slow" exceeded its 100ms timeout`}
	if res.Err != nil || !reflect.DeepEqual(res.value(), want) {
		t.Fatalf("got %#v, %v; want %#v", res.value(), res.Err, want)
	}
	if got, want := stepStatuses(res.Steps), []string{"main succeeded", "slow timed_out"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("steps %v, want %v", got, want)
	}
}

func TestEnclosingTimeoutStopsNestedOperations(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	// An inner timeout no shorter than main's ends later than main's
	// (inner starts later): main's is the limit reached, every time.
	for _, inner := range []time.Duration{time.Minute, 100 * time.Millisecond} {
		t.Run(inner.String(), func(t *testing.T) {
			t.Parallel()
			p := newProject(t, "p",
				op{name: "main", src: `function handle() {
					try { RunOperation("inner") } catch (e) { return "caught" }
				}`, timeout: 100 * time.Millisecond, onFailure: []string{"after"}},
				op{name: "inner", src: `function handle() { for (;;) {} }`, timeout: inner},
				op{name: "after", src: `function handle() { return GetLastError() }`},
			)
			for range 5 {
				start := time.Now()
				res := e.Run(context.Background(), Invocation{Project: p, Operation: "main"})
				quick(t, start)
				if res.Status != store.StatusTimedOut || !errors.Is(res.Err, ErrTimeout) || !strings.Contains(res.Err.Error(), `operation "main" exceeded its 100ms timeout`) {
					t.Fatalf("status %s err %v", res.Status, res.Err)
				}
				// The interrupt is main's: once main has ended, its onFailure chain runs.
				if got, want := stepStatuses(res.Steps), []string{"main timed_out", "inner timed_out", "after succeeded"}; !reflect.DeepEqual(got, want) {
					t.Fatalf("steps %v, want %v", got, want)
				}
				if !strings.Contains(res.Steps[1].Error, `operation "main" exceeded`) {
					t.Fatalf("inner step error %q, want main's timeout", res.Steps[1].Error)
				}
			}
		})
	}
}

// cancelSender cancels the run's context when the script sends a message.
type cancelSender struct{ cancel context.CancelCauseFunc }

func (s cancelSender) Send(context.Context, string, []byte, map[string]string) error {
	s.cancel(errCancelled)
	return nil
}

var errCancelled = errors.New("delivery cancelled")

func TestRunContextInterruptsNestedOperations(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	e := newEngine(t, Config{Sender: cancelSender{cancel}})
	p := newProject(t, "p",
		op{name: "main", src: `function handle() { RunOperation("inner") }`, onFailure: []string{"never"}},
		op{name: "inner", src: `function handle() { SendMessage("/queue/cancel", ""); for (;;) {} }`},
		op{name: "never", src: `function handle() {}`},
	)
	start := time.Now()
	res := e.Run(ctx, Invocation{Project: p, Operation: "main"})
	quick(t, start)
	if res.Status != store.StatusTimedOut || !errors.Is(res.Err, errCancelled) || !strings.Contains(res.Err.Error(), "run interrupted") {
		t.Fatalf("status %s err %v", res.Status, res.Err)
	}
	if got, want := stepStatuses(res.Steps), []string{"main timed_out", "inner timed_out"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("steps %v, want %v (the chain stops when the run's context ends)", got, want)
	}
}

// An ended run context starts no operation, and interrupts a filter.
func TestEndedRunContext(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	cause := errors.New("delivery lost")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	t.Run("run", func(t *testing.T) {
		t.Parallel()
		res := runOne(t, e, `function handle() { return 1 }`, nil)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		p := newProject(t, "p", op{name: "main", src: `function handle() { return 1 }`})
		res = e.Run(ctx, Invocation{Project: p, Operation: "main"})
		if res.Status != store.StatusTimedOut || !errors.Is(res.Err, cause) || !strings.Contains(res.Err.Error(), "not started") {
			t.Fatalf("status %s err %v", res.Status, res.Err)
		}
		if got, want := stepStatuses(res.Steps), []string{"main timed_out"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("steps %v, want %v", got, want)
		}
	})
	t.Run("filter", func(t *testing.T) {
		t.Parallel()
		p := newProject(t, "p", op{name: "f", src: `function filter() { for (;;) {} }`})
		start := time.Now()
		ok, err := e.Filter(ctx, p, "operations/op0.js", nil)
		quick(t, start)
		if ok || !errors.Is(err, cause) || !strings.Contains(err.Error(), "run interrupted") {
			t.Fatalf("got %v, %v", ok, err)
		}
	})
}

// ctxSender records the contexts Send is called with.
type ctxSender struct {
	mu   sync.Mutex
	ctxs []context.Context
	errs []error // each context's Err during its Send
}

func (s *ctxSender) Send(ctx context.Context, _ string, _ []byte, _ map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ctxs = append(s.ctxs, ctx)
	s.errs = append(s.errs, ctx.Err())
	return nil
}

type ctxKey struct{}

// Host functions doing I/O get the operation's context: derived from the
// run's, ending at the operation's deadline, and cancelled when the
// operation ends.
func TestHostFunctionsGetTheOperationsContext(t *testing.T) {
	t.Parallel()
	snd := &ctxSender{}
	e := newEngine(t, Config{Sender: snd})
	p := newProject(t, "p",
		op{name: "main", src: `function handle() { SendMessage("/queue/a", "outer"); RunOperation("inner"); SendMessage("/queue/a", "outer again") }`, timeout: time.Minute},
		op{name: "inner", src: `function handle() { SendMessage("/queue/a", "inner") }`, timeout: 10 * time.Second},
	)
	ctx := context.WithValue(context.Background(), ctxKey{}, "run")
	start := time.Now()
	res := e.Run(ctx, Invocation{Project: p, Operation: "main"})
	if res.Err != nil || len(snd.ctxs) != 3 {
		t.Fatalf("%v, %d sends", res.Err, len(snd.ctxs))
	}
	for i, limit := range []time.Duration{time.Minute, 10 * time.Second, time.Minute} {
		c := snd.ctxs[i]
		if c.Value(ctxKey{}) != "run" {
			t.Errorf("send %d: context is not derived from the run's", i)
		}
		if d, ok := c.Deadline(); !ok || d.Before(start.Add(limit-time.Second)) || d.After(time.Now().Add(limit)) {
			t.Errorf("send %d: deadline %v (set %v), want about %s from the start", i, d, ok, limit)
		}
		if snd.errs[i] != nil {
			t.Errorf("send %d: context ended during the call: %v", i, snd.errs[i])
		}
		if c.Err() == nil {
			t.Errorf("send %d: context still live after the run", i)
		}
	}
	if snd.ctxs[0] != snd.ctxs[2] {
		t.Error("an operation's calls should share its context")
	}
}

// A limit reached just as an operation ends must not leave an interrupt
// behind: the runtime is pooled and the next run must not see it.
func TestLimitsLeaveNoStaleInterrupt(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{Runtimes: 1, NoPrewarm: true})
	busy := `const end = Date.now() + e.ms; while (Date.now() < end) {}`
	p := newProject(t, "p",
		op{name: "main", src: `function handle(e) { ` + busy + `; try { RunOperation("inner") } catch (err) {} ; return 1 }`, timeout: 3 * time.Millisecond, onSuccess: []string{"next"}, onFailure: []string{"next"}},
		op{name: "inner", src: `function handle(e) { ` + busy + ` }`, timeout: 2 * time.Millisecond},
		op{name: "next", src: `function handle(e) { ` + busy + ` }`, timeout: 2 * time.Millisecond},
		op{name: "check", src: `function handle() { let s = 0; for (let i = 0; i < 1000; i++) s += i; return s }`},
	)
	for i := range 200 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%4)*time.Millisecond)
		e.Run(ctx, Invocation{Project: p, Operation: "main", Event: map[string]any{"ms": float64(i % 3)}})
		cancel()
		if res := e.Run(context.Background(), Invocation{Project: p, Operation: "check"}); res.Err != nil || res.value() != 499500.0 {
			t.Fatalf("run %d: the next run got %v, %v", i, res.value(), res.Err)
		}
	}
}

// TestReusedRunTimesOut: a runtime reuses its run state and the first
// operation's timer from run to run; each run's operations still time out
// at their own limits, whichever way the last run ended.
func TestReusedRunTimesOut(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{Runtimes: 1, NoPrewarm: true})
	p := newProject(t, "p",
		op{name: "fast", src: `function handle() { return 1 }`, timeout: time.Second}, // before the backstop: it has a timer
		op{name: "loop", src: `function handle() { for (;;) {} }`, timeout: 50 * time.Millisecond},
		op{name: "then", src: `function handle() { return 1 }`, timeout: 50 * time.Millisecond, onSuccess: []string{"loop"}},
	)
	backstop := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 5*time.Second)
	}
	for i, name := range []string{"fast", "loop", "fast", "fast", "loop", "loop", "then", "loop", "fast", "loop"} {
		ctx, cancel := backstop()
		start := time.Now()
		res := e.Run(ctx, Invocation{Project: p, Operation: name})
		cancel()
		quick(t, start)
		switch name {
		case "fast":
			if res.Err != nil || res.value() != 1.0 {
				t.Fatalf("run %d (%s): %v, %v", i, name, res.value(), res.Err)
			}
		case "then": // the chain's second top-level operation has a timer of its own
			if got := stepStatuses(res.Steps); !reflect.DeepEqual(got, []string{"then " + store.StatusSucceeded, "loop " + store.StatusTimedOut}) {
				t.Fatalf("run %d (%s): steps %v", i, name, got)
			}
		default:
			if res.Status != store.StatusTimedOut || !errors.Is(res.Err, ErrTimeout) {
				t.Fatalf("run %d (%s): status %s, err %v; want its own timeout", i, name, res.Status, res.Err)
			}
		}
	}
	// A run whose context ends first starts no timer of its own; the next
	// run's first operation gets one all the same.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	res := e.Run(ctx, Invocation{Project: p, Operation: "loop"})
	cancel()
	if !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Fatalf("run ended by its context: %v", res.Err)
	}
	ctx, cancel = backstop()
	defer cancel()
	start := time.Now()
	if res := e.Run(ctx, Invocation{Project: p, Operation: "loop"}); !errors.Is(res.Err, ErrTimeout) {
		t.Fatalf("after a run ended by its context: %v; want its own timeout", res.Err)
	}
	quick(t, start)
}
