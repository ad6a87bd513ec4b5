package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"math"
	"reflect"
	"slices"
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
	build := func(t *testing.T, src string) (goja.Value, *goja.Object) { return buildValue(t, v, src) }
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

// jsonStringify returns what goja's JSON.stringify(val) returns, as bytes
// (nil for undefined), or the exception it throws: what encodeJSON must
// write.
func jsonStringify(v *vm, val goja.Value) ([]byte, error) {
	s, err := v.stringify(goja.Undefined(), val)
	if err != nil {
		return nil, err
	}
	if s == nil || goja.IsUndefined(s) {
		return nil, nil
	}
	return []byte(s.String()), nil
}

// TestEncodeJSON checks that encodeJSON writes exactly the bytes
// JSON.stringify returns, fails where JSON.stringify throws (with its
// message), and runs getters, toJSON and Proxy traps as often, and in the
// same order, as JSON.stringify.
func TestEncodeJSON(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	v, err := newVM(e)
	if err != nil {
		t.Fatal(err)
	}
	// want, when set, spells out the expected bytes: JSON.stringify's
	// (checked too), unless differs says why encodeJSON knowingly writes
	// something else. Without want, the expectation is JSON.stringify's
	// output, whatever it is.
	tests := []struct{ name, src, want, differs string }{
		{name: "undefined", src: `undefined`},
		{name: "null", src: `null`, want: `null`},
		{name: "true", src: `true`, want: `true`},
		{name: "false", src: `false`, want: `false`},
		{name: "function", src: `function() {}`},
		{name: "symbol", src: `Symbol("x")`},

		// Members come in the order of the object's keys: integer-like
		// keys ascending, then the others in insertion order; not sorted.
		{name: "insertion order", src: `{b: 1, a: 2}`, want: `{"b":1,"a":2}`},
		{name: "integer-like keys first", src: `{b: 1, 2: 1, 1: 1}`, want: `{"1":1,"2":1,"b":1}`},
		{name: "key order", src: `{b: 1, a: 2, 10: 3, 2: 4, "": 5, B: 6, "é": 7, "\uffff": 8, "\u{10000}": 9, aa: 10, "a b": 11, "01": 12, "4294967295": 13}`},
		{name: "keys added later, deleted and re-added", src: `(() => { const o = {z: 1, y: 2, x: 3}; delete o.y; o.w = 4; o.y = 5; return o })()`, want: `{"z":1,"x":3,"w":4,"y":5}`},
		{name: "webhook answer", src: `{status: 201, headers: {"X-B": "1", "X-A": 2}, body: {id: "a<b", created: true}}`, want: `{"status":201,"headers":{"X-B":"1","X-A":2},"body":{"id":"a<b","created":true}}`},

		// Strings: only ", \ and control characters are escaped.
		{name: "html characters", src: `{"<k>": "<script>&amp;</script>"}`, want: `{"<k>":"<script>&amp;</script>"}`},
		{name: "line and paragraph separators", src: `["\u2028", "a\u2029b"]`, want: "[\"\u2028\",\"a\u2029b\"]"},
		{name: "control characters", src: `"\b\f\n\r\t\v\0\x01\x1f\x7f"`, want: `"\b\f\n\r\t\u000b\u0000\u0001\u001f` + "\x7f" + `"`},
		{name: "keys needing escapes", src: `{"<k>": 1, "q\"": 2, "\n": 3, "&": 4, "\u2028": 5}`, want: `{"<k>":1,"q\"":2,"\n":3,"&":4,"` + "\u2028" + `":5}`},
		{name: "quote and backslash", src: `{"q\"\\": "quote \" backslash \\ slash /"}`, want: `{"q\"\\":"quote \" backslash \\ slash /"}`},
		{name: "strings", src: `["", "plain", "é ü ß 中文 😀", "\ufffd", "\ud83d\ude00", "\u00e9\u0301"]`},
		{name: "lone surrogates", src: `["a\ud800b", "\udc00", "\ud800\ud800\udc00", "x\udbff", "\udfff\ufffd"]`, want: `["a\ud800b","\udc00","\ud800` + "\U00010000" + `","x\udbff","\udfff` + "\ufffd" + `"]`},
		{name: "keys with lone surrogates", src: `{"a\ud800": 1, "a\udc00": 2, "a\ufffd": 3, get "\udfff"() { calls.push("get"); return 4 }}`, want: `{"a\ud800":1,"a\udc00":2,"a` + "\ufffd" + `":3,"\udfff":4}`},

		// Numbers: as Number.prototype.toString writes them.
		{name: "numbers", src: `[1e21, 1e-7, 123e-20, 5e-324, 2**53 + 2, -0, 0.1 + 0.2, 1e20, 123456789012345680000, 0.000001, 1.5e300, -2.5]`,
			want: `[1e+21,1e-7,1.23e-18,5e-324,9007199254740994,0,0.30000000000000004,100000000000000000000,123456789012345680000,0.000001,1.5e+300,-2.5]`},
		{name: "integers", src: `[0, 1, -1, 42, 255, 256, 2**31, -(2**31), 2**53 - 1, -(2**53 - 1), 2**53, 2**53 + 2, 2**60, 2**63, -(2**64), 1e20, 123456789012340]`},
		{name: "floats", src: `[0.1, 0.1 + 0.2, -2.5, 1/3, 1e-6, 1e-7, 9.99e-7, 1.5e-300, 5e-324, 1e21, 1e21 - 65536, 1.7976931348623157e308, -1e300, 123.456e10, 4.35, 0.5e-6, 2**-1074 * 3]`},
		{name: "negative zero", src: `[-0, {z: -0}, 0 * -1]`, want: `[0,{"z":0},0]`},
		{name: "non-finite", src: `{n: NaN, p: Infinity, m: -Infinity, a: [NaN, -Infinity]}`, want: `{"n":null,"p":null,"m":null,"a":[null,null]}`},
		{name: "top-level NaN", src: `NaN`, want: `null`},

		{name: "nested", src: `{a: {b: [1, {c: "d", e: [[], {}]}], f: null}, g: [[[1]]], h: {}}`, want: `{"a":{"b":[1,{"c":"d","e":[[],{}]}],"f":null},"g":[[[1]]],"h":{}}`},
		{name: "undefined members", src: `{u: undefined, f() {}, s: Symbol("x"), [Symbol("k")]: 1, a: [undefined, function() {}, Symbol("y")], keep: 1}`, want: `{"a":[null,null,null],"keep":1}`},
		{name: "only undefined members", src: `{u: undefined, f() {}}`, want: `{}`},
		{name: "holes", src: `[1, , 3, , ]`, want: `[1,null,3,null]`},
		{name: "empty", src: `[{}, [], ""]`, want: `[{},[],""]`},
		{name: "own __proto__ key", src: `JSON.parse('{"__proto__": {"x": 1}, "y": 2}')`, want: `{"__proto__":{"x":1},"y":2}`},
		{name: "null prototype", src: `Object.assign(Object.create(null), {b: 1, a: 2})`, want: `{"b":1,"a":2}`},
		{name: "class instance", src: `new (class P { constructor() { this.x = 1 } get y() { calls.push("y"); return 2 } })()`, want: `{"x":1}`},
		{name: "getters in insertion order", src: `{get z() { calls.push("z"); return 1 }, get a() { calls.push("a"); return {get m() { calls.push("m"); return 2 }, get b() { calls.push("b"); return 3 }} }}`, want: `{"z":1,"a":{"m":2,"b":3}}`},
		{name: "non-enumerable", src: `Object.defineProperty({a: 1}, "h", {value: 2, enumerable: false})`, want: `{"a":1}`},

		{name: "toJSON", src: `{z: {toJSON(key) { calls.push("toJSON:" + key); return {key, n: 1} }}, a: [{toJSON(k) { calls.push("arr:" + k); return k }}]}`, want: `{"z":{"key":"z","n":1},"a":["0"]}`},
		{name: "toJSON returns undefined", src: `{a: {toJSON() { return undefined }}, b: 1}`, want: `{"b":1}`},
		{name: "top-level toJSON", src: `({toJSON(key) { calls.push("top:" + key); return [key] }})`, want: `[""]`},
		{name: "toJSON returns a date", src: `{a: {toJSON() { return new Date(0) }}}`, want: `{"a":"1970-01-01T00:00:00.000Z"}`,
			differs: `JSON.stringify calls toJSON once and writes the Date as {}; the Date is delegated, which asks its toJSON again`},

		// Delegated to JSON.stringify: its output is appended as it is.
		{name: "dates", src: `{d: new Date(0), a: [new Date(86400000)], bad: new Date(NaN)}`, want: `{"d":"1970-01-01T00:00:00.000Z","a":["1970-01-02T00:00:00.000Z"],"bad":null}`},
		{name: "map members", src: `{m: new Map([[1, 2]]), a: [new Map()], s: new Set([1])}`, want: `{"m":{},"a":[{}],"s":{}}`},
		{name: "boxed", src: `[new Number(-0), new String("<s>\u2028"), new Boolean(false), new Number(1e21)]`, want: "[0,\"<s>\u2028\",false,1e+21]"},
		{name: "error, regexp", src: `{e: new Error("x"), r: /x/g}`, want: `{"e":{},"r":{}}`},
		{name: "typed array", src: `{t: new Uint8Array([1, 2])}`, want: `{"t":{"0":1,"1":2}}`},
		{name: "array with extra props", src: `Object.assign([1, 2], {x: 3})`, want: `[1,2]`},
		{name: "proxy", src: `new Proxy({b: 1, a: 2}, {get(t, k) { calls.push("get:" + String(k)); return t[k] }})`, want: `{"b":1,"a":2}`},
		{name: "proxy member under a key", src: `{k: new Proxy({toJSON(key) { calls.push("toJSON:" + key); return [key] }}, {})}`, want: `{"k":["k"]}`},
		{name: "deep", src: `(() => { let o = {}; const top = o; for (let i = 0; i < 200; i++) { o.z = {i, a: [i, "<"]}; o = o.z } return top })()`},
		{name: "shared, not cyclic", src: `(() => { const s = {x: 1}; return {a: s, b: [s, s]} })()`, want: `{"a":{"x":1},"b":[{"x":1},{"x":1}]}`},

		// Errors, with JSON.stringify's messages.
		{name: "cycle", src: `(() => { const o = {a: {}}; o.a.b = o; return o })()`},
		{name: "cycle through array", src: `(() => { const a = [1]; a.push({a}); return a })()`},
		{name: "cycle through a delegated object", src: `(() => { const o = {}; o.p = new Proxy({o}, {}); return o })()`},
		{name: "bigint", src: `{n: 1n}`},
		{name: "top-level bigint", src: `1n`},
		{name: "throwing getter", src: `{get a() { throw new Error("getter failed") }}`},
		{name: "throwing toJSON", src: `{a: {toJSON() { throw new TypeError("no") }}}`},
	}
	build := func(t *testing.T, src string) (goja.Value, *goja.Object) { return buildValue(t, v, src) }
	t.Run("Go string with invalid UTF-8", func(t *testing.T) {
		// Each byte that is not UTF-8 is U+FFFD, as goja reads it.
		s := "a\xffb<\xed\xa0\x80"
		obj := v.rt.NewObject()
		_ = obj.Set("s", s)
		_ = obj.Set("a", v.rt.NewArray(s))
		want := []byte("{\"s\":\"a\ufffdb<\ufffd\ufffd\ufffd\",\"a\":[\"a\ufffdb<\ufffd\ufffd\ufffd\"]}")
		if ref, err := jsonStringify(v, obj); err != nil || !bytes.Equal(ref, want) {
			t.Fatalf("JSON.stringify gives %s, %v; want %s", ref, err, want)
		}
		if got, err := v.encodeJSON(obj); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("got %s, %v; want %s", got, err, want)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			val, calls := build(t, tt.src)
			want, wantErr := jsonStringify(v, val)
			if tt.want != "" && tt.differs == "" && !bytes.Equal(want, []byte(tt.want)) {
				t.Fatalf("JSON.stringify gives %s (%v), the case says %s", want, wantErr, tt.want)
			}
			if tt.differs != "" {
				want = []byte(tt.want)
			}
			wantCalls := calls.Export()
			val, calls = build(t, tt.src)
			got, err := v.encodeJSON(val)
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("err %v, want %v", err, wantErr)
			}
			if err != nil {
				if msg := strings.TrimPrefix(err.Error(), "value is not JSON-serialisable: "); msg == err.Error() || !strings.Contains(wantErr.Error(), msg) {
					t.Fatalf("err %q, want the message of %q", err, wantErr)
				}
				return
			}
			if !bytes.Equal(got, want) || (got == nil) != (want == nil) {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
			if gotCalls := calls.Export(); !reflect.DeepEqual(gotCalls, wantCalls) {
				t.Fatalf("side effects %v, want %v", gotCalls, wantCalls)
			}
		})
	}
}

// TestAppendNumber checks appendNumber against goja's own conversion of a
// number to a string (String(x), which JSON.stringify writes for a finite
// number), over edge cases and a sweep of magnitudes.
func TestAppendNumber(t *testing.T) {
	t.Parallel()
	rt := goja.New()
	check := func(f float64) {
		t.Helper()
		want := rt.ToValue(f).String()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			want = "null"
		}
		if got := string(appendNumber(nil, f)); got != want {
			t.Errorf("appendNumber(%v) = %s, want %s", f, got, want)
		}
	}
	for _, f := range []float64{0, math.Copysign(0, -1), math.NaN(), math.Inf(1), math.Inf(-1),
		1e21, 1e-7, 123e-20, 5e-324, 1<<53 + 2, 0.1 + 0.2, 1e20, 123456789012345680000, 999999999999999900000,
		1e-6, 1.5e-6, 0.000001234, 1e-5, math.MaxFloat64, math.SmallestNonzeroFloat64, 1 << 62, -(1 << 63), 1.7976931348623157e308} {
		check(f)
		check(-f)
	}
	for exp := -330; exp <= 310; exp++ {
		for _, m := range []float64{1, 1.5, 1.2345678901234567, 9.999999999999999, 3.3333333333333335, 7} {
			check(m * math.Pow(10, float64(exp)))
		}
	}
}

// FuzzEncodeJSON compares encodeJSON with JSON.stringify, byte for byte,
// for strings as keys and values, for numbers, and for whatever JSON.parse
// makes of the input.
func FuzzEncodeJSON(f *testing.F) {
	f.Add(`{"b": [1, -0, 1e21, 1e-7, "x<y>&\u2028"], "a": {"": null, "10": true, "2": false}}`, 0.1)
	f.Add("a\xffb\u00e9\x00\"\\", math.Copysign(0, -1))
	f.Add(`[9007199254740993, 123456789012345678901234567890, 5e-324]`, 1e21)
	f.Add(`{"__proto__": 1, "constructor": {"toJSON": 2}}`, math.Inf(-1))
	f.Add(`{"a\ud800": "\udc00x", "a\ufffd": 1, "b": {"2": 1, "1": [1e-7, 123e-20]}}`, 123e-20)
	f.Add("\u2028\x1f\x7f\ufffd", 123456789012345680000.0)
	e := newEngine(f, Config{})
	v, err := newVM(e)
	if err != nil {
		f.Fatal(err)
	}
	parse, _ := goja.AssertFunction(v.rt.Get("JSON").ToObject(v.rt).Get("parse"))
	f.Fuzz(func(t *testing.T, s string, x float64) {
		vals := []goja.Value{v.rt.ToValue(s), v.rt.ToValue(x)}
		obj := v.rt.NewObject()
		_ = obj.Set(s, s)
		_ = obj.Set("n", x)
		vals = append(vals, obj, v.rt.NewArray(s, x, obj))
		if parsed, err := parse(goja.Undefined(), v.rt.ToValue(s)); err == nil {
			vals = append(vals, parsed)
		}
		for _, val := range vals {
			want, wantErr := jsonStringify(v, val)
			got, err := v.encodeJSON(val)
			if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) || (got == nil) != (want == nil) {
				t.Fatalf("%v:\n got %s (%v)\nwant %s (%v)", val, got, err, want, wantErr)
			}
		}
	})
}

// buildValue evaluates the expression src in v's runtime, where the array
// calls is in scope for recording side effects, and returns its value and
// calls.
func buildValue(t *testing.T, v *vm, src string) (goja.Value, *goja.Object) {
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

// Objects opsrunner builds from Go data (the event, its headers, query and
// properties, an async RunOperation's input) have their keys sorted, so a
// script that returns them answers the same bytes every run: Go maps have
// no order of their own.
func TestObjectsFromGoDataHaveSortedKeys(t *testing.T) {
	e := newEngine(t, Config{})
	event := map[string]any{
		"path": "p", "method": "POST", "rawBody": "{}", "body": map[string]any{"z": 1, "a": 2, "m": 3},
		"headers": map[string]string{"x-b": "1", "accept": "*/*", "content-type": "application/json", "x-a": "2"},
		"query":   func() any { return map[string]any{"q": "1", "b": "2", "a": "3"} },
	}
	const src = `function handle(event) {
		return [Object.keys(event), Object.keys(event.body), Object.keys(event.headers), Object.keys(event.query), event];
	}`
	const want = `[["body","headers","method","path","query","rawBody"],["a","m","z"],["accept","content-type","x-a","x-b"],["a","b","q"],` +
		`{"body":{"a":2,"m":3,"z":1},"headers":{"accept":"*/*","content-type":"application/json","x-a":"2","x-b":"1"},"method":"POST","path":"p","query":{"a":"3","b":"2","q":"1"},"rawBody":"{}"}]`
	for range 20 { // map iteration order changes from one range to the next
		res := runOne(t, e, src, event)
		if res.Err != nil || string(res.JSON) != want {
			t.Fatalf("got %s %v\nwant %s", res.JSON, res.Err, want)
		}
	}
	t.Run("events of other keys, as many", func(t *testing.T) {
		e := newEngine(t, Config{Runtimes: 1}) // one runtime sees every event
		for i, ev := range []map[string]any{{"b": 1, "a": 2}, {"c": 3, "a": 4}, {"c": 5, "b": 6}, {"b": 7, "a": 8}} {
			res := runOne(t, e, "function handle(event) { return Object.keys(event); }", ev)
			keys := slices.Sorted(maps.Keys(ev))
			if want, _ := json.Marshal(keys); res.Err != nil || string(res.JSON) != string(want) {
				t.Fatalf("event %d: got %s %v, want %s", i, res.JSON, res.Err, want)
			}
		}
	})
	t.Run("chain variables a queued run starts with", func(t *testing.T) {
		p := newProject(t, "p", op{name: "main", src: "function handle() { return $vars; }"})
		vars := map[string]any{"z": 1, "a": 2, "m": 3, "b": 4}
		for range 20 {
			res := e.Run(context.Background(), Invocation{RunID: "r", Project: p, Operation: "main", Trigger: TriggerOperation, Vars: vars})
			if want := `{"a":2,"b":4,"m":3,"z":1}`; res.Err != nil || string(res.JSON) != want {
				t.Fatalf("got %s %v, want %s", res.JSON, res.Err, want)
			}
		}
	})
}
