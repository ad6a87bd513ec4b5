package runtime

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/store"
)

// Runaway scripts, wherever they run away (module level, handler, Promise
// jobs, result encoding), end with a clear failure in our words; a script
// error says where (file:line:col); an interrupted runtime is not reused.

func TestRunawayScripts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, src string
		status    string
		sentinel  error
		msg       string // the whole error
		pooled    bool   // the runtime goes back to the pool
	}{
		{"loop at module level", "while (true) {}\nfunction handle() {}", store.StatusTimedOut, ErrTimeout,
			`operation timed out: operation "op" exceeded its 100ms timeout`, false},
		{"loop in a Promise job", "function handle() { return Promise.resolve().then(() => { for (;;) {} }) }", store.StatusTimedOut, ErrTimeout,
			`operation timed out: operation "op" exceeded its 100ms timeout`, false},
		{"recursion at module level", "function f(n) { return f(n + 1) + 1 }\nf(0)\nfunction handle() {}", store.StatusFailed, ErrStackOverflow,
			"operations/op0.js:1:25: RangeError: maximum call stack size exceeded", true},
		{"recursion in toJSON", "function handle() {\n  return {toJSON() { return [this.toJSON()] }}\n}", store.StatusFailed, ErrStackOverflow,
			"operations/op0.js:2:41: RangeError: maximum call stack size exceeded", false},
		{"recursion in a getter", "function handle() {\n  return {get x() { return this.x }}\n}", store.StatusFailed, ErrStackOverflow,
			"operations/op0.js:2:33: RangeError: maximum call stack size exceeded", false},
		{"promise never settles", "async function handle() { await new Promise(() => {}); return 1 }", store.StatusFailed, nil,
			"operations/op0.js: promise never settled", true},
		{"promise chain never settles", "function handle() { return Promise.resolve().then(() => new Promise(() => {})) }", store.StatusFailed, nil,
			"operations/op0.js: promise never settled", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEngine(t, Config{NoPrewarm: true, Runtimes: 1})
			p := newProject(t, "p", op{name: "op", src: tt.src, timeout: 100 * time.Millisecond})
			res := runBounded(t, e, context.Background(), Invocation{Project: p, Operation: "op"})
			if res.Status != tt.status || res.Err == nil || res.Err.Error() != tt.msg {
				t.Fatalf("status %s err %v; want %s %q", res.Status, res.Err, tt.status, tt.msg)
			}
			if tt.sentinel != nil && !errors.Is(res.Err, tt.sentinel) {
				t.Fatalf("err %v is not %v", res.Err, tt.sentinel)
			}
			if len(res.Steps) != 1 || res.Steps[0].Status != tt.status || res.Steps[0].Error != tt.msg {
				t.Fatalf("steps %+v", res.Steps)
			}
			if pooled := len(e.pool) == 1; pooled != tt.pooled {
				t.Fatalf("runtime pooled: %v, want %v", pooled, tt.pooled)
			}
			// The engine goes on.
			if res := runOne(t, e, `function handle() { return "ok" }`, nil); res.value() != "ok" || strings.Contains(string(res.JSON), "error") {
				t.Fatalf("next run: %s %v", res.JSON, res.Err)
			}
		})
	}
}
