package runtime

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dop251/goja"
)

// TestExportJSON checks exportJSON against its definition: what
// JSON.stringify followed by json.Unmarshal gives, including errors and the
// side effects of getters and toJSON (each must run exactly as often).
func TestExportJSON(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	v, err := newVM(e)
	if err != nil {
		t.Fatal(err)
	}
	// Each case builds a value; calls records getter/toJSON/trap activity.
	tests := []struct{ name, src string }{
		{"primitives", `[1, 1.5, -0, NaN, Infinity, "s", true, false, null, undefined, 2**60]`},
		{"top-level undefined", `undefined`},
		{"top-level number", `-0`},
		{"top-level string", `"x\u00e9\ud83d\ude00"`},
		{"top-level function", `function() {}`},
		{"top-level symbol", `Symbol("x")`},
		{"nested", `{a: {b: [1, {c: "d"}], e: null}, f: [[], {}]}`},
		{"dropped members", `{u: undefined, f() {}, s: Symbol("x"), [Symbol("k")]: 1, a: [undefined, function() {}, Symbol("y")]}`},
		{"holes", `[1, , 3]`},
		{"key order", `{b: 1, a: 2, 10: 3, 2: 4}`},
		{"own __proto__ key", `JSON.parse('{"__proto__": {"x": 1}, "y": 2}')`},
		{"null prototype", `Object.assign(Object.create(null), {a: 1})`},
		{"class instance", `new (class P { constructor() { this.x = 1 } get y() { calls.push("y"); return 2 } })()`},
		{"getters", `{get a() { calls.push("a"); return {b: 1} }, c: 2}`},
		{"non-enumerable", `Object.defineProperty({a: 1}, "h", {value: 2, enumerable: false})`},
		{"toJSON with key", `{k: {toJSON(key) { calls.push("toJSON:" + key); return {key, n: 1} }}}`},
		{"toJSON in array", `[{toJSON(key) { calls.push("toJSON:" + key); return key }}]`},
		{"toJSON returns undefined", `{a: {toJSON() { return undefined }}, b: 1}`},
		{"toJSON returns function", `{a: {toJSON() { return () => 1 }}}`},
		{"toJSON returns nested toJSON", `{a: {toJSON() { return {b: {toJSON() { calls.push("inner"); return 5 }}} }}}`},
		{"toJSON on function", `{f: Object.assign(function() {}, {toJSON() { calls.push("f"); return "fn" }})}`},
		{"dates", `{d: new Date(0), a: [new Date(86400000)]}`},
		{"boxed", `[new Number(3), new String("s"), new Boolean(false), Object(Symbol())]`},
		{"map and set", `{m: new Map([[1, 2]]), s: new Set([1])}`},
		{"error object", `{e: new Error("x")}`},
		{"typed array", `new Uint8Array([1, 2])`},
		{"array with extra props", `Object.assign([1, 2], {x: 3})`},
		{"proxy", `new Proxy({a: 1}, {get(t, k) { calls.push("get:" + String(k)); return t[k] }})`},
		{"proxy array", `{p: new Proxy([1, 2], {})}`},
		{"arguments", `(function() { return arguments })(1, 2)`},
		{"deep", `(() => { let o = {}; const top = o; for (let i = 0; i < 200; i++) { o.n = {i}; o = o.n } return top })()`},
		{"cycle", `(() => { const o = {a: {}}; o.a.b = o; return o })()`},
		{"cycle through array", `(() => { const a = [1]; a.push({a}); return a })()`},
		{"bigint", `{n: 1n}`},
		{"throwing getter", `{get a() { throw new Error("getter failed") }}`},
		{"throwing toJSON", `{a: {toJSON() { throw new TypeError("no") }}}`},
		{"lone surrogate", `{s: "a\ud800b"}`},
		{"large int", `{n: 9007199254740993, m: -1e300, f: 0.1 + 0.2}`},
	}
	build := func(t *testing.T, src string) (goja.Value, *goja.Object) {
		t.Helper()
		fn, err := v.rt.RunString(`(function(calls) { return (` + src + `) })`)
		if err != nil {
			t.Fatal(err)
		}
		call, _ := goja.AssertFunction(fn)
		calls := v.rt.NewArray()
		val, err := call(goja.Undefined(), calls)
		if err != nil {
			t.Fatal(err)
		}
		return val, calls
	}
	reference := func(val goja.Value) (any, error) {
		s, err := v.stringify(goja.Undefined(), val)
		if err != nil {
			return nil, err
		}
		if s == nil || goja.IsUndefined(s) {
			return nil, nil
		}
		var out any
		err = json.Unmarshal([]byte(s.String()), &out)
		return out, err
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			val, calls := build(t, tt.src)
			want, wantErr := reference(val)
			wantCalls := calls.Export()
			val, calls = build(t, tt.src)
			got, err := v.exportJSON(val)
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("err %v, want %v", err, wantErr)
			}
			if err != nil {
				if !strings.HasPrefix(err.Error(), "value is not JSON-serialisable: ") || !strings.Contains(wantErr.Error(), strings.TrimPrefix(err.Error(), "value is not JSON-serialisable: ")) {
					t.Fatalf("err %q, want the message of %q", err, wantErr)
				}
				return
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %#v\nwant %#v", got, want)
			}
			if gotCalls := calls.Export(); !reflect.DeepEqual(gotCalls, wantCalls) {
				t.Fatalf("side effects %v, want %v", gotCalls, wantCalls)
			}
		})
	}
}

// TestExportInterrupted: an interrupt while a getter runs during the export
// is an export error, not a panic.
func TestExportInterrupted(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	v, err := newVM(e)
	if err != nil {
		t.Fatal(err)
	}
	val, err := v.rt.RunString(`({get a() { for (;;) {} }})`)
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, func() { v.rt.Interrupt("stop") })
	if _, err := v.exportJSON(val); err == nil || !strings.Contains(err.Error(), "stop") {
		t.Fatalf("err %v, want the interrupt", err)
	}
}
