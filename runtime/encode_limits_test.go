package runtime

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/store"
)

// goValue matches what a Go value printed with %v looks like in an error
// (a pointer, a struct, a Go type name): errors are in our own words.
var goValue = regexp.MustCompile(`&\{|0x[0-9a-f]|\*runtime\.|interruptCause|goja\.`)

func noGoValues(t *testing.T, err error) {
	t.Helper()
	if err != nil && goValue.MatchString(err.Error()) {
		t.Fatalf("error %q shows a Go value", err)
	}
}

// runBounded runs inv and fails the test if Run has not returned within 10
// seconds (no limit interrupted the script). The run is left spinning
// then: the test binary ends with the test.
func runBounded(t *testing.T, e *Engine, ctx context.Context, inv Invocation) Result {
	t.Helper()
	done := make(chan Result, 1)
	go func() { done <- e.Run(ctx, inv) }()
	select {
	case res := <-done:
		return res
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s: no limit interrupted the script")
		return Result{}
	}
}

// TestResultEncodingIsUnderTheTimeout: toJSON, getters and Proxy traps of
// the triggered operation's result run within the operation's time limit;
// a result that never finishes encoding ends the run timed_out, in our
// words, and its runtime is not pooled again.
func TestResultEncodingIsUnderTheTimeout(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"toJSON":             `function handle() { return {toJSON() { for (;;) {} }} }`,
		"getter":             `function handle() { return {a: 1, get x() { while (true) {} }} }`,
		"nested getter":      `function handle() { return {list: [1, {get x() { for (;;) {} }}]} }`,
		"proxy get trap":     `function handle() { return new Proxy({a: 1}, {get() { for (;;) {} }}) }`,
		"proxy ownKeys trap": `function handle() { return new Proxy({}, {ownKeys() { for (;;) {} }}) }`,
		"toJSON in array":    `function handle() { return [0, {toJSON: () => { for (;;) {} }}] }`,
		"async result":       `async function handle() { return {toJSON() { for (;;) {} }} }`,
	}
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEngine(t, Config{NoPrewarm: true, Runtimes: 1})
			p := newProject(t, "p", op{name: "op", src: src, timeout: 200 * time.Millisecond})
			res := runBounded(t, e, context.Background(), Invocation{Project: p, Operation: "op"})
			want := `operation timed out: operation "op" exceeded its 200ms timeout while encoding its result`
			if res.Status != store.StatusTimedOut || !errors.Is(res.Err, ErrTimeout) || res.Err.Error() != want {
				t.Fatalf("status %s err %v; want timed_out %q", res.Status, res.Err, want)
			}
			noGoValues(t, res.Err)
			if len(res.Steps) != 1 || res.Steps[0].Status != store.StatusTimedOut || res.Steps[0].Error != want {
				t.Fatalf("steps %+v", res.Steps)
			}
			if n := len(e.pool); n != 0 {
				t.Fatalf("the interrupted runtime was pooled (%d idle)", n)
			}
		})
	}
}

// TestResultEncodingInterruptedByTheRunContext: the end of the run's
// context also stops an encoding, with a message naming the encoding.
func TestResultEncodingInterruptedByTheRunContext(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{NoPrewarm: true})
	v, err := newVM(e) // built before the context's time starts
	if err != nil {
		t.Fatal(err)
	}
	e.pool <- v
	p := newProject(t, "p", op{name: "op", src: `function handle() { return {get x() { for (;;) {} }} }`, timeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	res := runBounded(t, e, ctx, Invocation{Project: p, Operation: "op"})
	if res.Status != store.StatusTimedOut || !errors.Is(res.Err, context.DeadlineExceeded) ||
		!strings.Contains(res.Err.Error(), `operation "op", while encoding its result: run interrupted`) {
		t.Fatalf("status %s err %v", res.Status, res.Err)
	}
	noGoValues(t, res.Err)
}

// TestResultEncodingFailureRunsOnFailure: a result that cannot be encoded
// fails the triggered operation, so its onFailure chain runs (and sees
// the reason), not its onSuccess chain.
func TestResultEncodingFailureRunsOnFailure(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	p := newProject(t, "p",
		op{name: "op", src: `function handle() { return {toJSON() { for (;;) {} }} }`, timeout: 100 * time.Millisecond,
			onSuccess: []string{"ok"}, onFailure: []string{"report"}},
		op{name: "ok", src: `function handle() { return 1 }`},
		op{name: "report", src: `function handle() { log.info(GetLastError()); return {toJSON() { for (;;) {} }} }`, timeout: 100 * time.Millisecond},
	)
	res := runBounded(t, e, context.Background(), Invocation{Project: p, Operation: "op"})
	if got, want := fmt.Sprint(stepStatuses(res.Steps)), "[op timed_out report succeeded]"; got != want {
		t.Fatalf("steps %s, want %s (a chain member's result is not encoded)", got, want)
	}
	if len(res.Logs) != 1 || !strings.Contains(res.Logs[0].Message, "while encoding its result") {
		t.Fatalf("logs %+v", res.Logs)
	}
}

// TestInterruptMessagesShowNoGoValues: an interrupt seen by a host
// function (a getter looping while log.info or SendMessage serialises its
// argument) keeps unwinding the script and reads in our words.
func TestInterruptMessagesShowNoGoValues(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{Sender: &fakeSender{}})
	for name, src := range map[string]string{
		"log":  `function handle() { try { log.info({get x() { for (;;) {} }}) } catch (e) { return "caught: " + e } }`,
		"send": `function handle() { try { SendMessage("/queue/q", {get x() { for (;;) {} }}) } catch (e) { return "caught: " + e } }`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := newProject(t, "p", op{name: "op", src: src, timeout: 100 * time.Millisecond})
			res := runBounded(t, e, context.Background(), Invocation{Project: p, Operation: "op"})
			if res.Status != store.StatusTimedOut || res.Err.Error() != `operation timed out: operation "op" exceeded its 100ms timeout` {
				t.Fatalf("status %s err %v JSON %s", res.Status, res.Err, res.JSON)
			}
		})
	}
}

// TestFilterLimits: a filter runs under its limits too (here the run's
// context), fails in our words, and its interrupted runtime is not
// pooled; its result is only tested for truthiness, which runs no getter.
func TestFilterLimits(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{NoPrewarm: true, Runtimes: 1})
	p := newProject(t, "p",
		op{name: "loop", src: "while (true) {}\nfunction filter() { return true }"},
		op{name: "getter", src: "function filter() { return {get x() { for (;;) {} }} }"},
	)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := e.Filter(ctx, p, "operations/op0.js", nil)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "run interrupted") {
			t.Fatalf("err %v", err)
		}
		noGoValues(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Filter did not return within 10s")
	}
	if n := len(e.pool); n != 0 {
		t.Fatalf("the interrupted runtime was pooled (%d idle)", n)
	}
	if ok, err := e.Filter(context.Background(), p, "operations/op1.js", nil); !ok || err != nil {
		t.Fatalf("getter filter: %v %v", ok, err)
	}
}
