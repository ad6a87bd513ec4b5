package runtime

import (
	"context"
	"reflect"
	"testing"
)

func TestReusableModule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, src string
		want      bool
	}{
		{"functions called by name", "function handle(e) { return helper(e) }\nfunction helper (x) { return x }", true},
		{"directive", `"use strict"; function handle() { return 1 }`, true},
		{"async and recursion", "async function handle(e) { return fib(10) }\nfunction fib(n) { return n < 2 ? n : fib(n-1) + fib(n-2) }", true},
		{"name inside a longer word", "function handle(e) { return e.handled + handleX }", true},
		{"top-level variable", "let n = 0; function handle() { return ++n }", false},
		{"top-level statement", "log.info('loaded'); function handle() {}", false},
		{"property on a function", "function handle() { handle.n = (handle.n || 0) + 1; return handle.n }", false},
		{"function as a value", "function handle() { return [1].map(helper) }\nfunction helper(x) { return x }", false},
		{"constructor", "function F() {}\nfunction handle() { return new F() }", false},
		{"binding reassigned", "function handle() { handle = null }", false},
		{"binding incremented", "function handle() { handle += 1 }", false},
		{"method of the same name", "function handle(e) { return e.handle() }", false},
		{"exports", "function handle() { exports.n = (exports.n || 0) + 1; return exports.n }", false},
		{"module.exports", "module.exports = function (e) { return e }", false},
		{"callee", "function handle() { arguments.callee.n = 1 }", false},
		{"eval", `function handle() { return eval("1") }`, false},
		{"escaped name", `function handle() { h\u0061ndle = 1 }`, false},
		{"class", "class A {}\nfunction handle() { return 1 }", false},
		{"syntax error", "function handle( {", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		if got := reusableModule([]byte(tt.src)); got != tt.want {
			t.Errorf("%s: reusableModule(%q) = %v, want %v", tt.name, tt.src, got, tt.want)
		}
	}
}

// A reused module gives every run the same answers as a fresh one, and a
// module that could keep state is still evaluated for every run.
func TestReusedModulesKeepNoState(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{Runtimes: 1})
	p := newProject(t, "p",
		op{name: "pure", src: "function handle(e) { return twice(e.n) }\nfunction twice(x) { const o = {}; o.v = x * 2; return o.v }"},
		op{name: "counter", src: "let n = 0; function handle() { return ++n }"},
		op{name: "props", src: "function handle() { handle.n = (handle.n || 0) + 1; return handle.n }"},
	)
	for i := range 3 {
		for op, want := range map[string]any{"pure": 4.0, "counter": 1.0, "props": 1.0} {
			res := e.Run(context.Background(), Invocation{Project: p, Operation: op, Event: map[string]any{"n": 2.0}})
			if res.Err != nil || !reflect.DeepEqual(res.value(), want) {
				t.Fatalf("run %d of %s: got %#v, %v; want %#v", i, op, res.value(), res.Err, want)
			}
		}
	}
}
