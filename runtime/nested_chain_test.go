package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/store"
)

// The onSuccess/onFailure chain of an operation called with
// RunOperation(ref, true) is awaited as a top-level chain is: a member that
// returns a Promise is waited for on the run's event loop, within the
// run's time budget, before the next member starts; its rejection fails
// it with the file:line:col of the error; and RunOperation then returns a
// Promise of the called operation's outcome, settled once the whole chain
// has ended.

// stepsOf is "name=status" for each step, in order.
func stepsOf(res Result) string {
	var b []string
	for _, s := range res.Steps {
		b = append(b, s.Operation+"="+s.Status)
	}
	return strings.Join(b, " ")
}

func TestANestedChainMemberThatWaitsIsAwaited(t *testing.T) {
	e := newEngine(t, Config{})
	p := newProject(t, "p",
		op{name: "main", src: `async function handle() {
			const v = await RunOperation("Helper");
			return {v, order: Get("order")};
		}`},
		op{name: "Helper", onSuccess: []string{"Slow", "Next"}, src: `function handle() { Set("order", ["helper"]); return 1; }`},
		op{name: "Slow", src: `async function handle() { await sleep(20); Set("order", Get("order").concat("slow")); }`},
		op{name: "Next", src: `function handle() { Set("order", Get("order").concat("next")); }`})
	res := e.Run(context.Background(), Invocation{Project: p, Operation: "main", Trigger: TriggerWebhook})
	if res.Err != nil {
		t.Fatalf("run failed: %v (steps %s)", res.Err, stepsOf(res))
	}
	want := map[string]any{"v": 1.0, "order": []any{"helper", "slow", "next"}}
	if got := res.value(); !equalJSON(got, want) {
		t.Fatalf("result %v, want %v: the member is awaited before the next starts, and before RunOperation's result", got, want)
	}
	if got, want := stepsOf(res), "main=succeeded Helper=succeeded Slow=succeeded Next=succeeded"; got != want {
		t.Fatalf("steps %s, want %s", got, want)
	}
}

func TestANestedChainMembersRejectionFailsItWithItsPosition(t *testing.T) {
	e := newEngine(t, Config{})
	p := newProject(t, "p",
		op{name: "main", src: `async function handle() { return await RunOperation("Helper"); }`},
		op{name: "Helper", onSuccess: []string{"Bad", "Next"}, src: `function handle() { return "helper"; }`},
		op{name: "Bad", src: `async function handle() {
	await sleep(1);
	throw new Error("bad member");
}`},
		op{name: "Next", src: `async function handle() { await sleep(1); log.info("next ran after " + GetLastError()); }`})
	res := e.Run(context.Background(), Invocation{Project: p, Operation: "main", Trigger: TriggerWebhook})
	if res.Err != nil || res.value() != "helper" {
		t.Fatalf("result %v, err %v: a failing member of the chain does not fail its caller", res.value(), res.Err)
	}
	if got, want := stepsOf(res), "main=succeeded Helper=succeeded Bad=failed Next=succeeded"; got != want {
		t.Fatalf("steps %s, want %s", got, want)
	}
	if got, want := res.Steps[2].Error, "operations/op2.js:3:8: Error: bad member"; got != want {
		t.Fatalf("Bad's step error %q, want %q", got, want)
	}
	if !hasLog(res, "next ran after bad member") {
		t.Fatalf("logs %v: the next member runs after the failed one", res.Logs)
	}
}

func TestANestedChainMemberThatNeverSettlesFailsAndTheChainGoesOn(t *testing.T) {
	e := newEngine(t, Config{})
	p := newProject(t, "p",
		op{name: "main", src: `async function handle() { return await RunOperation("Helper"); }`},
		op{name: "Helper", onSuccess: []string{"Stuck", "Next"}, src: `function handle() { return 7; }`},
		op{name: "Stuck", src: `function handle() { return new Promise(() => {}); }`},
		op{name: "Next", src: `async function handle() { await sleep(1); }`})
	res := e.Run(context.Background(), Invocation{Project: p, Operation: "main", Trigger: TriggerWebhook})
	if res.Err != nil || res.value() != 7.0 {
		t.Fatalf("result %v, err %v; want 7 (steps %s)", res.value(), res.Err, stepsOf(res))
	}
	if got, want := stepsOf(res), "main=succeeded Helper=succeeded Stuck=failed Next=succeeded"; got != want {
		t.Fatalf("steps %s, want %s", got, want)
	}
	if got := res.Steps[2].Error; !strings.Contains(got, "promise never settled") {
		t.Fatalf("Stuck's step error %q, want promise never settled", got)
	}
}

func TestAnAsyncNestedOperationsChainRunsOnceItSettles(t *testing.T) {
	e := newEngine(t, Config{})
	p := newProject(t, "p",
		op{name: "main", src: `async function handle() {
			const ok = await RunOperation("Works");
			try {
				await RunOperation("Fails");
			} catch (e) {
				return {ok, caught: e.message, order: Get("order")};
			}
		}`},
		op{name: "Works", onSuccess: []string{"Done"}, src: `async function handle() { await sleep(5); Set("order", ["works"]); return "w"; }`},
		op{name: "Fails", onFailure: []string{"Report"}, src: `async function handle() {
	await sleep(5);
	throw new Error("nested failure");
}`},
		op{name: "Done", src: `function handle() { Set("order", Get("order").concat("done")); }`},
		op{name: "Report", src: `async function handle() { await sleep(5); Set("order", Get("order").concat("report: " + GetLastError())); }`})
	res := e.Run(context.Background(), Invocation{Project: p, Operation: "main", Trigger: TriggerWebhook})
	if res.Err != nil {
		t.Fatalf("run failed: %v (steps %s)", res.Err, stepsOf(res))
	}
	want := map[string]any{"ok": "w", "caught": "nested failure", "order": []any{"works", "done", "report: nested failure"}}
	if got := res.value(); !equalJSON(got, want) {
		t.Fatalf("result %v, want %v", got, want)
	}
	if got, want := stepsOf(res), "main=succeeded Works=succeeded Done=succeeded Fails=failed Report=succeeded"; got != want {
		t.Fatalf("steps %s, want %s", got, want)
	}
	if got, want := res.Steps[3].Error, "operations/op2.js:3:8: Error: nested failure"; got != want {
		t.Fatalf("Fails's step error %q, want %q", got, want)
	}
}

func TestASynchronousNestedFailureWithAnAsyncOnFailureRejectsAfterIt(t *testing.T) {
	e := newEngine(t, Config{})
	p := newProject(t, "p",
		op{name: "main", src: `async function handle() {
			try {
				await RunOperation("Fails");
			} catch (e) {
				return {operation: e.operation, status: e.status, message: e.message, reported: Get("reported")};
			}
		}`},
		op{name: "Fails", onFailure: []string{"Report"}, src: `function handle() { RaiseError("sync failure"); }`},
		op{name: "Report", src: `async function handle() { await sleep(5); Set("reported", true); }`})
	res := e.Run(context.Background(), Invocation{Project: p, Operation: "main", Trigger: TriggerWebhook})
	want := map[string]any{"operation": "Fails", "status": "failed", "message": "sync failure", "reported": true}
	if got := res.value(); res.Err != nil || !equalJSON(got, want) {
		t.Fatalf("result %v, err %v; want %v", got, res.Err, want)
	}
}

func TestANestedChainMemberWaitsWithinTheRunsTimeBudget(t *testing.T) {
	e := newEngine(t, Config{})
	p := newProject(t, "p",
		op{name: "main", timeout: 100 * time.Millisecond, src: `async function handle() { return await RunOperation("Helper"); }`},
		op{name: "Helper", onSuccess: []string{"Sleepy"}, src: `function handle() { return 1; }`},
		op{name: "Sleepy", src: `async function handle() { await sleep(10000); }`})
	start := time.Now()
	res := e.Run(context.Background(), Invocation{Project: p, Operation: "main", Trigger: TriggerWebhook})
	if res.Status != store.StatusTimedOut || !errors.Is(res.Err, ErrTimeout) {
		t.Fatalf("status %s, err %v; want timed_out", res.Status, res.Err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the run took %s: the member's wait is bounded by main's 100ms", took)
	}
	if got, want := stepsOf(res), "main=timed_out Helper=succeeded Sleepy=timed_out"; got != want {
		t.Fatalf("steps %s, want %s", got, want)
	}
	if got := res.Steps[2].Error; !strings.Contains(got, "promise not settled") || !strings.Contains(got, `operation "main" exceeded its 100ms timeout`) {
		t.Fatalf("Sleepy's step error %q: it should say main's limit ended its wait", got)
	}
}

func TestAMemberOfANestedChainThatIsNotAwaitedStillRunsBeforeTheOperationEnds(t *testing.T) {
	e := newEngine(t, Config{})
	p := newProject(t, "p",
		op{name: "main", src: `function handle() { RunOperation("Helper"); return "returned"; }`},
		op{name: "Helper", onSuccess: []string{"Later"}, src: `function handle() { return 1; }`},
		op{name: "Later", src: `async function handle() { await sleep(5); log.info("later ran"); }`})
	res := e.Run(context.Background(), Invocation{Project: p, Operation: "main", Trigger: TriggerWebhook})
	if res.Err != nil || !hasLog(res, "later ran") {
		t.Fatalf("err %v, logs %v (steps %s)", res.Err, res.Logs, stepsOf(res))
	}
	if got, want := stepsOf(res), "main=succeeded Helper=succeeded Later=succeeded"; got != want {
		t.Fatalf("steps %s, want %s", got, want)
	}
}

// A chain member that is itself called with RunOperation inside a nested
// chain: chains within chains settle innermost first.
func TestNestedChainsWithinNestedChains(t *testing.T) {
	e := newEngine(t, Config{})
	ops := []op{{name: "main", src: `async function handle() { await RunOperation("A"); return Get("log"); }`}}
	for _, n := range []string{"A", "B", "C"} {
		next := map[string][]string{"A": {"B"}, "B": {"C"}}[n]
		ops = append(ops, op{name: n, onSuccess: next, src: fmt.Sprintf(
			`async function handle() { await sleep(2); Set("log", (Get("log") || []).concat(%q)); }`, n)})
	}
	p := newProject(t, "p", ops...)
	res := e.Run(context.Background(), Invocation{Project: p, Operation: "main", Trigger: TriggerWebhook})
	if got := res.value(); res.Err != nil || !equalJSON(got, []any{"A", "B", "C"}) {
		t.Fatalf("result %v, err %v (steps %s)", got, res.Err, stepsOf(res))
	}
}

// A nested operation's rejected Promise is its failure, thrown by
// RunOperation: once the caller catches it, it is not an unhandled
// rejection failing the caller too.
func TestANestedOperationsRejectionCaughtByItsCallerIsHandled(t *testing.T) {
	e := newEngine(t, Config{})
	p := newProject(t, "p",
		op{name: "main", src: `function handle() { try { RunOperation("Fails"); } catch (e) { return e.message; } }`},
		op{name: "Fails", src: `async function handle() { throw new Error("rejected at once"); }`})
	res := e.Run(context.Background(), Invocation{Project: p, Operation: "main", Trigger: TriggerWebhook})
	if res.Err != nil || res.value() != "rejected at once" {
		t.Fatalf("result %v, err %v; want the caught message", res.value(), res.Err)
	}
	if got, want := stepsOf(res), "main=succeeded Fails=failed"; got != want {
		t.Fatalf("steps %s, want %s", got, want)
	}
}
