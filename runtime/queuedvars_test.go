package runtime

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/store"
)

// A run queued by RunOperation(ref, false) starts with its caller's chain
// variables as JSON carries them (the cluster queue sends them as JSON, the
// local queue gives the same values). A variable JSON cannot carry fails
// the RunOperation call: it never vanishes on its way to the callee.
func TestQueuedRunVariables(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, setup string
		want        map[string]any // the Vars dispatched
		wantErr     string         // else: what RunOperation throws
	}{
		{"none", ``, nil, ""},
		{"plain JSON values", `Set("x", 42); Set("o", {a: [1, 2]}); Set("s", "t"); Set("n", null); Set("b", false)`,
			map[string]any{"x": 42.0, "o": map[string]any{"a": []any{1.0, 2.0}}, "s": "t", "n": nil, "b": false}, ""},
		{"as JSON.stringify writes them: a Date, a toJSON, a NaN", `Set("d", new Date(0)); Set("j", {toJSON() { return "J" }}); Set("nan", NaN)`,
			map[string]any{"d": "1970-01-01T00:00:00.000Z", "j": "J", "nan": nil}, ""},
		{"members JSON omits, as JSON.stringify omits them", `Set("o", {a: 1, f() {}, u: undefined})`,
			map[string]any{"o": map[string]any{"a": 1.0}}, ""},
		{"an undefined variable reads the same when left out", `Set("u", undefined); Set("x", 1)`, map[string]any{"x": 1.0}, ""},
		{"set through $vars", `$vars.y = [true]`, map[string]any{"y": []any{true}}, ""},
		{"a function", `Set("x", 1); Set("f", function () {})`, nil, `RunOperation: variable "f" is a function, which JSON cannot carry to a queued run`},
		{"a symbol", `Set("s", Symbol("s"))`, nil, `RunOperation: variable "s" is a symbol, which JSON cannot carry to a queued run`},
		{"a toJSON that returns nothing", `Set("t", {toJSON() {}})`, nil, `RunOperation: variable "t" has no JSON value (its toJSON returned undefined, a function or a symbol)`},
		{"a cycle", `const c = {}; c.self = c; Set("x", 1); Set("c", c)`, nil, `RunOperation: variable "c": value is not JSON-serialisable: TypeError: Converting circular structure to JSON`},
		{"a BigInt", `Set("big", 1n)`, nil, `RunOperation: variable "big": value is not JSON-serialisable: TypeError: Do not know how to serialize a BigInt`},
		{"a throwing toJSON", `Set("t", {toJSON() { throw new Error("nope") }})`, nil, `RunOperation: variable "t": value is not JSON-serialisable: Error: nope`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			disp := &fakeDispatcher{}
			e := newEngine(t, Config{Dispatcher: disp})
			src := `function handle() { ` + tt.setup + `;
  try { return RunOperation("Callee", false) } catch (e) { return "threw: " + e.message } }`
			p := newProject(t, "p", op{name: "main", src: src}, op{name: "Callee", src: `function handle() {}`})
			res := e.Run(context.Background(), Invocation{Project: p, Operation: "main"})
			if res.Err != nil {
				t.Fatalf("run failed: %v", res.Err)
			}
			if tt.wantErr != "" {
				if res.value() != "threw: "+tt.wantErr || len(disp.invs) != 0 {
					t.Fatalf("got %#v, %d dispatched; want it to throw %q", res.value(), len(disp.invs), tt.wantErr)
				}
				return
			}
			if res.value() != "run-1" || len(disp.invs) != 1 {
				t.Fatalf("got %#v, %d dispatched", res.value(), len(disp.invs))
			}
			if got := disp.invs[0].Vars; !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("dispatched vars %#v, want %#v", got, tt.want)
			}
		})
	}
}

// The callee of a queued run reads its variables in sorted key order, as
// every run started with variables does, whatever order the caller set
// them in.
func TestQueuedRunVariablesOrder(t *testing.T) {
	t.Parallel()
	disp := &fakeDispatcher{}
	e := newEngine(t, Config{Dispatcher: disp})
	p := newProject(t, "p",
		op{name: "main", src: `function handle() { Set("z", 1); Set("a", {y: 1, b: 2}); return RunOperation("Callee", false) }`},
		op{name: "Callee", src: `function handle() { return JSON.stringify($vars) }`})
	if res := e.Run(context.Background(), Invocation{Project: p, Operation: "main"}); res.Err != nil || len(disp.invs) != 1 {
		t.Fatalf("caller: %v, %d dispatched", res.Err, len(disp.invs))
	}
	res := e.Run(context.Background(), disp.invs[0])
	if want := `{"a":{"b":2,"y":1},"z":1}`; res.Err != nil || res.value() != want {
		t.Fatalf("callee saw %#v, %v; want %s", res.value(), res.Err, want)
	}
}

// A time limit reached while a variable is encoded (a toJSON that never
// returns) ends the operation: the script cannot catch it.
func TestQueuedRunVariablesTimeLimit(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{Dispatcher: &fakeDispatcher{}})
	p := newProject(t, "p",
		op{name: "main", timeout: 50 * time.Millisecond, src: `function handle() {
  Set("t", {toJSON() { for (;;) {} }});
  try { RunOperation("Callee", false) } catch (e) { return "caught" } }`},
		op{name: "Callee", src: `function handle() {}`})
	res := e.Run(context.Background(), Invocation{Project: p, Operation: "main"})
	if res.Status != store.StatusTimedOut || res.value() == "caught" {
		t.Fatalf("got %s %#v %v; want timed_out", res.Status, res.value(), res.Err)
	}
	if res.Err == nil || !strings.Contains(res.Err.Error(), "main") {
		t.Fatalf("error %v should name the operation", res.Err)
	}
}
