package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/store"
)

func TestHandlerForms(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	tests := []struct {
		name, src string
		event     any
		want      any
	}{
		{"top-level handle", `function handle(event) { return {n: event.n + 1} }`, map[string]any{"n": 1.0}, map[string]any{"n": 2.0}},
		{"module.exports function", `module.exports = function(e) { return "hi " + e.who }`, map[string]any{"who": "bob"}, "hi bob"},
		{"module.exports.handle", `module.exports = {handle: () => [1, "a", true, null]}`, nil, []any{1.0, "a", true, nil}},
		{"exports.handle", `exports.handle = (e, ctx) => ctx.operation + "/" + ctx.project + "/" + ctx.trigger + "/" + ctx.run`, nil, "main/p/webhook/r1"},
		{"parses JSON body", `function handle(e) { const b = JSON.parse(e.body); return {ok: b.x * 2} }`, map[string]any{"body": `{"x": 21}`}, map[string]any{"ok": 42.0}},
		{"async handler", `async function handle() { const x = await Promise.resolve(20); return x + 1 }`, nil, 21.0},
		{"undefined result", `function handle() {}`, nil, nil},
		{"functions dropped", `function handle() { return {f() {}, a: 1} }`, nil, map[string]any{"a": 1.0}},
		{"eval allowed", `function handle() { return eval("1+2") + Function("return 4")() }`, nil, 7.0},
		{"no require", `function handle() { return [typeof require, typeof process, typeof fs] }`, nil, []any{"undefined", "undefined", "undefined"}},
		{"new Set still works", `function handle() { const s = new Set([1, 1, 2]); return [s.size, s instanceof Set] }`, nil, []any{2.0, true}},
		{"error subclass sets name", `class E extends Error { constructor(m) { super(m); this.name = "E" } }
			function handle() { const e = new E("x"); const o = {}; o.toString = () => "o"; return [e.name, String(e), "" + o] }`, nil, []any{"E", "E: x", "o"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := runOne(t, e, tt.src, tt.event)
			if res.Err != nil || res.Status != store.StatusSucceeded {
				t.Fatalf("status %s, err %v", res.Status, res.Err)
			}
			if !reflect.DeepEqual(res.value(), tt.want) {
				t.Fatalf("value %#v, want %#v", res.value(), tt.want)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	tests := []struct {
		name, src        string
		line, col        int
		msg              string
		sentinel         error
		stackContains    string
		promiseNeverDone bool
	}{
		// goja places an error where it was created: the "new" of new Error,
		// the "(" of a failing call, the "." of a failing member access.
		{"throw on line 3", "function handle() {\n  const e =\n    new Error('boom');\n  throw e;\n}", 3, 5, "Error: boom", nil, "handle", false},
		{"member of null", "function handle() {\n  let x = null;\n  x.foo;\n}", 3, 5, "TypeError: Cannot read property 'foo' of undefined", nil, "", false},
		{"line 1 column unshifted", "new Error('x'); function handle() { throw new Error('one') }", 1, 43, "Error: one", nil, "", false},
		{"line 1 call", "function handle() { undefinedFn() }", 1, 32, "ReferenceError: undefinedFn is not defined", nil, "", false},
		{"error at top level", "\n\nthrow new Error('boom');", 3, 7, "Error: boom", nil, "", false},
		{"RaiseError", "function handle() {\n  RaiseError('bad order');\n}", 2, 13, "bad order", nil, "", false},
		{"rejected promise", "async function handle() {\n  throw new Error('async boom');\n}", 2, 9, "Error: async boom", nil, "", false},
		{"deep recursion", "function f(n) { return f(n + 1) + 1 }\nfunction handle() { return f(0) }", 1, 25, "RangeError: maximum call stack size exceeded", ErrStackOverflow, "", false},
		{"no handle", "var x = 1", 0, 0, "", nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := runOne(t, e, tt.src, nil)
			if res.Status != store.StatusFailed || res.Err == nil {
				t.Fatalf("status %s err %v, want failed", res.Status, res.Err)
			}
			if tt.sentinel != nil && !errors.Is(res.Err, tt.sentinel) {
				t.Fatalf("err %v is not %v", res.Err, tt.sentinel)
			}
			if tt.msg == "" {
				return
			}
			se := scriptErr(t, res.Err)
			if se.File != "operations/op0.js" || se.Line != tt.line || se.Column != tt.col {
				t.Errorf("position %s:%d:%d, want operations/op0.js:%d:%d", se.File, se.Line, se.Column, tt.line, tt.col)
			}
			if !strings.EqualFold(se.Message, tt.msg) {
				t.Errorf("message %q, want %q", se.Message, tt.msg)
			}
			if strings.Contains(se.Stack, "native") || strings.Contains(se.Stack, "opsrunner:") || !strings.Contains(se.Stack, "operations/op0.js") {
				t.Errorf("stack %q should show user frames only", se.Stack)
			}
		})
	}
}

func TestPendingPromiseFails(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	res := runOne(t, e, `function handle() { return new Promise(() => {}) }`, nil)
	if res.Status != store.StatusFailed || res.Err == nil || !strings.Contains(res.Err.Error(), "promise never settled") {
		t.Fatalf("got %s %v", res.Status, res.Err)
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	p := newProject(t, "p",
		op{name: "loop", src: `function handle() { Set("before", 1); for (;;) {} }`, timeout: 200 * time.Millisecond, onFailure: []string{"after"}},
		op{name: "after", src: `function handle() { log.info("after: " + GetLastError()); return Get("before") }`},
	)
	start := time.Now()
	res := e.Run(context.Background(), Invocation{Project: p, Operation: "loop"})
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %s", d)
	}
	if res.Status != store.StatusTimedOut || !errors.Is(res.Err, ErrTimeout) {
		t.Fatalf("status %s err %v", res.Status, res.Err)
	}
	if len(res.Steps) != 2 || res.Steps[1].Status != store.StatusSucceeded {
		t.Fatalf("steps %+v", res.Steps)
	}
	if len(res.Logs) != 1 || !strings.Contains(res.Logs[0].Message, "timed out") {
		t.Fatalf("logs %+v", res.Logs)
	}

	t.Run("context cancelled from outside", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		p := newProject(t, "p", op{name: "loop", src: `function handle() { while (true) {} }`, onFailure: []string{"never"}},
			op{name: "never", src: `function handle() {}`})
		res := e.Run(ctx, Invocation{Project: p, Operation: "loop"})
		if res.Status != store.StatusTimedOut || !errors.Is(res.Err, context.DeadlineExceeded) || !strings.Contains(res.Err.Error(), "interrupted") {
			t.Fatalf("status %s err %v", res.Status, res.Err)
		}
		if len(res.Steps) != 1 {
			t.Fatalf("chain should stop when the run's context ends: %+v", res.Steps)
		}
	})
}

func TestNoLeaksBetweenChains(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	polluters := []string{
		`function handle() { globalThis.leak = 1; Array.prototype.x = 1; Object.prototype.y = 2; JSON.parse = null; String.prototype.trim = null; }`,
		`"use strict"; function handle() { globalThis.leak = 1; leak2 = 3; Object.defineProperty(globalThis, "leak3", {value: 1, configurable: true}); }`,
		`"use strict"; function handle() { Array.prototype.x = 1 }`,
		`function handle() { Object.getPrototypeOf([][Symbol.iterator]()).next = null; Set("v", 1); Math.random = () => 4; }`,
	}
	check := `function handle() { return [typeof leak, typeof leak2, typeof leak3, [].x, ({}).y, typeof JSON.parse, typeof "".trim,
		[1,2][Symbol.iterator]().next().value, Math.random() < 1, typeof Get("v")] }`
	want := []any{"undefined", "undefined", "undefined", nil, nil, "function", "function", 1.0, true, "undefined"}
	for _, src := range polluters {
		runOne(t, e, src, nil)
		for range 3 { // the pool holds several runtimes; check more than one
			res := runOne(t, e, check, nil)
			if res.Err != nil || !reflect.DeepEqual(res.value(), want) {
				t.Fatalf("after %q: got %#v, %v", src, res.value(), res.Err)
			}
		}
	}
}

// A runtime's next run starts with nothing of the last one's state (its
// logs, steps, chain variables, last error, pending event fields), and
// leaves the last one's Result as it was.
func TestRunStateIsFresh(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{Runtimes: 1})
	dirty := newProject(t, "p",
		op{name: "main", src: `function handle(e) { console.log("first"); Set("v", 1); try { RaiseError("boom") } catch (x) {} return 1 }`, onSuccess: []string{"next"}},
		op{name: "next", src: `function handle(e) { return 2 }`},
	)
	clean := newProject(t, "p", op{name: "main", src: `function handle(e) { return [GetLastError(), typeof Get("v"), Object.keys(e).length, e.body] }`})
	event := map[string]any{"body": json.RawMessage(`{"a":1}`), "headers": map[string]any{"x": "y"}}
	for i := range 3 {
		first := e.Run(context.Background(), Invocation{Project: dirty, Operation: "main", Event: event})
		if first.Err != nil || len(first.Logs) != 1 || len(first.Steps) != 2 {
			t.Fatalf("round %d, first run: %v, logs %v, steps %v", i, first.Err, first.Logs, first.Steps)
		}
		logs, steps := slices.Clone(first.Logs), slices.Clone(first.Steps)
		res := e.Run(context.Background(), Invocation{Project: clean, Operation: "main", Event: map[string]any{"body": "text"}})
		if want := []any{"", "undefined", 1.0, "text"}; res.Err != nil || !reflect.DeepEqual(res.value(), want) || len(res.Logs) != 0 || len(res.Steps) != 1 {
			t.Fatalf("round %d, next run: got %#v, %v, logs %v, steps %v", i, res.value(), res.Err, res.Logs, res.Steps)
		}
		if !reflect.DeepEqual(first.Logs, logs) || !reflect.DeepEqual(first.Steps, steps) {
			t.Fatalf("round %d: the next run changed the first's result: logs %v, steps %v", i, first.Logs, first.Steps)
		}
	}
}

func TestConcurrentRuns(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	p := newProject(t, "p",
		op{name: "main", src: `function handle(e) { Set("n", e.n); return RunOperation("double") }`},
		op{name: "double", src: `function handle(e) { return Get("n") * 2 + e.n - e.n }`},
	)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				n := float64(g*1000 + i)
				res := e.Run(context.Background(), Invocation{Project: p, Operation: "main", Event: map[string]any{"n": n}})
				if res.Err != nil || res.value() != 2*n {
					t.Errorf("n=%v: %v %v", n, res.value(), res.Err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestModuleStateIsFresh: a pooled runtime reuses a program's module
// wrapper, but every run evaluates the module in a new scope and nothing a
// script can reach from its module keeps state between runs.
func TestModuleStateIsFresh(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	p := newProject(t, "p", op{name: "main", src: `let counter = 0;
		const self = arguments.callee;
		self.runs = (self.runs || 0) + 1;
		if (self.prototype) self.prototype.seen = true;
		function handle() { counter++; return [counter, typeof self.runs, typeof (self.prototype && self.prototype.seen)] }`})
	want := []any{1.0, "undefined", "undefined"}
	for i := range 12 { // more runs than pooled runtimes
		res := e.Run(context.Background(), Invocation{Project: p, Operation: "main"})
		if res.Err != nil || !reflect.DeepEqual(res.value(), want) {
			t.Fatalf("run %d: got %#v, %v; want %#v", i, res.value(), res.Err, want)
		}
	}
}

// TestResetFastPath: the end-of-chain global check counts the global
// object's keys without listing them; if a goja upgrade breaks that, this
// fails (runs stay correct, only slower).
func TestResetFastPath(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	v, err := newVM(e)
	if err != nil {
		t.Fatal(err)
	}
	if v.globalNames == nil {
		t.Fatal("global key counter unavailable")
	}
	if _, err := v.rt.RunString(`globalThis.added = 1`); err != nil {
		t.Fatal(err)
	}
	if n := v.globalNames(); n != len(v.baseline)+1 {
		t.Fatalf("count %d after adding a global, want %d", n, len(v.baseline)+1)
	}
	if !v.reset() || v.globalNames() != len(v.baseline) {
		t.Fatal("reset did not remove the added global")
	}
}

func TestPrewarm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want int
	}{
		{"fills the pool", Config{Runtimes: 2}, 2},
		{"disabled", Config{Runtimes: 2, NoPrewarm: true}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEngine(t, tt.cfg)
			if cap(e.pool) != tt.cfg.Runtimes {
				t.Fatalf("pool size %d, want %d", cap(e.pool), tt.cfg.Runtimes)
			}
			deadline := time.Now().Add(10 * time.Second)
			for len(e.pool) < tt.want && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond)
			if n := len(e.pool); n != tt.want {
				t.Fatalf("%d idle runtimes, want %d", n, tt.want)
			}
		})
	}
	t.Run("replaces discarded runtimes", func(t *testing.T) {
		t.Parallel()
		e := newEngine(t, Config{Runtimes: 2})
		waitPool := func(n int) {
			t.Helper()
			deadline := time.Now().Add(10 * time.Second)
			for len(e.pool) < n && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if len(e.pool) < n {
				t.Fatalf("%d idle runtimes, want %d", len(e.pool), n)
			}
		}
		waitPool(2)
		p := newProject(t, "p", op{name: "loop", src: `function handle() { for (;;) {} }`, timeout: 50 * time.Millisecond})
		if res := e.Run(context.Background(), Invocation{Project: p, Operation: "loop"}); !errors.Is(res.Err, ErrTimeout) {
			t.Fatalf("err %v", res.Err)
		}
		waitPool(2) // the interrupted runtime was discarded and replaced
	})
	t.Run("close stops warming", func(t *testing.T) {
		t.Parallel()
		e := New(Config{Runtimes: 64})
		start := time.Now()
		e.Close()
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Close took %s", d)
		}
		if n := len(e.pool); n != 0 {
			t.Fatalf("%d idle runtimes after Close", n)
		}
	})
}

// frozenCheck lists the intrinsics reachable from the global object, and
// from the hidden iterator, generator and async prototypes, that are not
// frozen, and the global bindings that are not fixed.
const frozenCheck = `(function() {
	const notFrozen = [], seen = new Set([globalThis]), queue = [];
	const visit = (v, path) => {
		if ((typeof v !== "object" && typeof v !== "function") || v === null || seen.has(v)) return;
		seen.add(v); queue.push([v, path]);
	};
	for (const k of Reflect.ownKeys(globalThis)) {
		const d = Object.getOwnPropertyDescriptor(globalThis, k);
		if (d.configurable || d.writable) notFrozen.push("global " + String(k));
		visit(d.value, String(k));
	}
	const generator = Object.getPrototypeOf((function*(){})()); // its function's own prototype: skip it
	const hidden = [[][Symbol.iterator](), new Map().entries(), new Set().values(), ""[Symbol.iterator](),
		/x/[Symbol.matchAll](""), generator, (function*(){}), (async function(){})];
	hidden.forEach((h, i) => visit(Object.getPrototypeOf(h), "hidden" + i));
	while (queue.length) {
		const [o, path] = queue.pop();
		if (!Object.isFrozen(o)) notFrozen.push(path);
		visit(Object.getPrototypeOf(o), path + ".__proto__");
		for (const k of Reflect.ownKeys(o)) {
			const d = Object.getOwnPropertyDescriptor(o, k);
			visit(d.value, path + "." + String(k)); visit(d.get, path + ".get " + String(k)); visit(d.set, path + ".set " + String(k));
		}
	}
	return [notFrozen.slice(0, 5), seen.size > 500, Object.isExtensible(globalThis)];
})()`

// overrideCheck: objects may still assign the properties frozen prototypes
// hold (the override mistake avoided), the prototypes themselves may not,
// and the global Set (also the host's Set(name, value)) constructs a Set.
const overrideCheck = `(function() {
	class E extends Error { constructor(m) { super(m); this.name = "E"; } }
	const o = {}; o.toString = () => "mine"; o.constructor = 1;
	let threw = false;
	try { Array.prototype.constructor = null; } catch (e) { threw = e instanceof TypeError; }
	return [new E("x").name, String(o), o.constructor, threw, new Set([1, 2]).size,
		Object.getOwnPropertyDescriptor(Object.prototype, "toString").enumerable];
})()`

// TestBuiltinsFrozen: every runtime is hardened (harden.go), the first
// one of an engine walking with descriptors and recording its plan, the
// next ones following that plan: each has every intrinsic frozen, the
// global bindings fixed, the global object extensible, and overriding
// working.
func TestBuiltinsFrozen(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{NoPrewarm: true})
	for i, kind := range []string{"recording", "following the plan", "following it again"} {
		v, err := newVM(e)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if i > 0 && e.plans.get() == nil {
			t.Fatal("no plan recorded")
		}
		got, err := v.rt.RunString(frozenCheck)
		if err != nil || !reflect.DeepEqual(got.Export(), []any{[]any{}, true, true}) {
			t.Fatalf("%s: got %#v, %v", kind, got, err)
		}
		got, err = v.rt.RunString(overrideCheck)
		want := []any{"E", "mine", int64(1), true, int64(2), false}
		if err != nil || !reflect.DeepEqual(got.Export(), want) {
			t.Fatalf("%s: got %#v, %v; want %#v", kind, got.Export(), err, want)
		}
	}
}
