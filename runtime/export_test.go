package runtime

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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

// jsonReference is what encodeJSON must write for val: JSON.stringify's
// output decoded to Go data and written by json.Marshal (nil for
// undefined), which is what exporting the value and json.Marshal-ing it
// gave before encodeJSON existed.
func jsonReference(v *vm, val goja.Value) ([]byte, error) {
	s, err := v.stringify(goja.Undefined(), val)
	if err != nil {
		return nil, err
	}
	if s == nil || goja.IsUndefined(s) {
		return nil, nil
	}
	var x any
	if err := json.Unmarshal([]byte(s.String()), &x); err != nil {
		return nil, err
	}
	return json.Marshal(x)
}

// TestEncodeJSON checks that encodeJSON writes exactly json.Marshal's bytes
// for the Go data of JSON.stringify's output, fails where JSON.stringify
// throws (with its message), and runs getters and toJSON as often, and in
// the same order, as JSON.stringify.
func TestEncodeJSON(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	v, err := newVM(e)
	if err != nil {
		t.Fatal(err)
	}
	// want, when set, is the expected JSON where encodeJSON knowingly
	// differs from JSON.stringify (as the exporter before it did).
	tests := []struct{ name, src, want string }{
		{"undefined", `undefined`, ""},
		{"null", `null`, ""},
		{"true", `true`, ""},
		{"false", `false`, ""},
		{"function", `function() {}`, ""},
		{"symbol", `Symbol("x")`, ""},
		{"integers", `[0, 1, -1, 42, 255, 256, 2**31, -(2**31), 2**53 - 1, -(2**53 - 1), 2**53, 2**53 + 2, 2**60, 2**63, -(2**64), 1e20, 123456789012340]`, ""},
		{"floats", `[0.1, 0.1 + 0.2, -2.5, 1/3, 1e-6, 1e-7, 9.99e-7, 1.5e-300, 5e-324, 1e21, 1e21 - 65536, 1.7976931348623157e308, -1e300, 123.456e10]`, ""},
		{"negative zero", `[-0, {z: -0}, 0 * -1]`, ""},
		{"non-finite", `{n: NaN, p: Infinity, m: -Infinity, a: [NaN, -Infinity]}`, ""},
		{"top-level NaN", `NaN`, ""},
		{"strings", `["", "plain", "quote \" backslash \\ slash /", "\b\f\n\r\t\v\0\x01\x1f\x7f", "<script>&amp;</script>", "é ü ß 中文 😀", "\u2028\u2029", "\ufffd", "a\ud800b", "\udc00", "\ud83d\ude00"]`, ""},
		{"nested", `{a: {b: [1, {c: "d", e: [[], {}]}], f: null}, g: [[[1]]], h: {}}`, ""},
		{"key order", `{b: 1, a: 2, 10: 3, 2: 4, "": 5, B: 6, "é": 7, "\uffff": 8, "\u{10000}": 9, aa: 10, "a b": 11}`, ""},
		{"keys needing escapes", `{"<k>": 1, "q\"": 2, "\n": 3, "&": 4, "\u2028": 5}`, ""},
		{"undefined members", `{u: undefined, f() {}, s: Symbol("x"), [Symbol("k")]: 1, a: [undefined, function() {}, Symbol("y")], keep: 1}`, ""},
		{"only undefined members", `{u: undefined, f() {}}`, ""},
		{"holes", `[1, , 3, , ]`, ""},
		{"empty", `[{}, [], ""]`, ""},
		{"own __proto__ key", `JSON.parse('{"__proto__": {"x": 1}, "y": 2}')`, ""},
		{"null prototype", `Object.assign(Object.create(null), {b: 1, a: 2})`, ""},
		{"class instance", `new (class P { constructor() { this.x = 1 } get y() { calls.push("y"); return 2 } })()`, ""},
		{"getters in insertion order", `{get z() { calls.push("z"); return 1 }, get a() { calls.push("a"); return {get m() { calls.push("m"); return 2 }, get b() { calls.push("b"); return 3 }} }}`, ""},
		{"non-enumerable", `Object.defineProperty({a: 1}, "h", {value: 2, enumerable: false})`, ""},
		{"toJSON", `{z: {toJSON(key) { calls.push("toJSON:" + key); return {key, n: 1} }}, a: [{toJSON(k) { calls.push("arr:" + k); return k }}]}`, ""},
		{"toJSON returns undefined", `{a: {toJSON() { return undefined }}, b: 1}`, ""},
		// JSON.stringify calls toJSON once and writes the Date as {}; the
		// Date is delegated, which asks its toJSON again.
		{"toJSON returns a date", `{a: {toJSON() { return new Date(0) }}}`, `{"a":"1970-01-01T00:00:00.000Z"}`},
		{"top-level toJSON", `({toJSON(key) { calls.push("top:" + key); return [key] }})`, ""},
		{"dates", `{d: new Date(0), a: [new Date(86400000)], bad: new Date(NaN)}`, ""},
		{"boxed", `[new Number(-0), new String("<s>"), new Boolean(false)]`, ""},
		{"map, set, error, regexp", `{m: new Map([[1, 2]]), s: new Set([1]), e: new Error("x"), r: /x/g}`, ""},
		{"typed array", `{t: new Uint8Array([1, 2])}`, ""},
		{"array with extra props", `Object.assign([1, 2], {x: 3})`, ""},
		{"proxy", `new Proxy({b: 1, a: 2}, {get(t, k) { calls.push("get:" + String(k)); return t[k] }})`, ""},
		{"deep", `(() => { let o = {}; const top = o; for (let i = 0; i < 200; i++) { o.z = {i, a: [i]}; o = o.z } return top })()`, ""},
		{"shared, not cyclic", `(() => { const s = {x: 1}; return {a: s, b: [s, s]} })()`, ""},
		{"webhook answer", `{status: 201, headers: {"X-A": "1", "x-n": 2}, body: {created: true, id: "a<b"}}`, ""},
		{"cycle", `(() => { const o = {a: {}}; o.a.b = o; return o })()`, ""},
		{"cycle through array", `(() => { const a = [1]; a.push({a}); return a })()`, ""},
		{"bigint", `{n: 1n}`, ""},
		{"top-level bigint", `1n`, ""},
		{"throwing getter", `{get a() { throw new Error("getter failed") }}`, ""},
		{"throwing toJSON", `{a: {toJSON() { throw new TypeError("no") }}}`, ""},
	}
	build := func(t *testing.T, src string) (goja.Value, *goja.Object) { return buildValue(t, v, src) }
	t.Run("Go string with invalid UTF-8", func(t *testing.T) {
		s := "a\xffb<\xed\xa0\x80"
		want, _ := json.Marshal(map[string]any{"s": s, "a": []any{s}}) // what exporting it did
		obj := v.rt.NewObject()
		_ = obj.Set("s", s)
		_ = obj.Set("a", v.rt.NewArray(s))
		if got, err := v.encodeJSON(obj); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("got %s, %v; want %s", got, err, want)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			val, calls := build(t, tt.src)
			want, wantErr := jsonReference(v, val)
			if tt.want != "" {
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

// FuzzEncodeJSON compares encodeJSON with its reference (see
// jsonReference) for strings as keys and values, for numbers, and for
// whatever JSON.parse makes of the input.
func FuzzEncodeJSON(f *testing.F) {
	f.Add(`{"b": [1, -0, 1e21, 1e-7, "x<y>&\u2028"], "a": {"": null, "10": true, "2": false}}`, 0.1)
	f.Add("a\xffb\u00e9\x00\"\\", math.Copysign(0, -1))
	f.Add(`[9007199254740993, 123456789012345678901234567890, 5e-324]`, 1e21)
	f.Add(`{"__proto__": 1, "constructor": {"toJSON": 2}}`, math.Inf(-1))
	e := newEngine(f, Config{})
	v, err := newVM(e)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string, x float64) {
		vals := []goja.Value{v.rt.ToValue(s), v.rt.ToValue(x)}
		obj := v.rt.NewObject()
		_ = obj.Set(s, s)
		_ = obj.Set("n", x)
		vals = append(vals, obj, v.rt.NewArray(s, x, obj))
		if json.Valid([]byte(s)) {
			// goja's JSON.parse refuses some valid JSON (1e700), which is
			// not encodeJSON's business: such inputs add no value.
			if parsed, err := v.rt.RunString(`JSON.parse(` + string(appendString(nil, s)) + `)`); err == nil {
				vals = append(vals, parsed)
			}
		}
		for _, val := range vals {
			want, wantErr := jsonReference(v, val)
			got, err := v.encodeJSON(val)
			same := bytes.Equal(got, want)
			if !utf8.ValidString(s) && !same {
				// A Go string's invalid bytes reach encodeJSON as they are
				// (json.Marshal writes \ufffd) but JSON.stringify's output
				// as U+FFFD: compare what the JSON says.
				same = reflect.DeepEqual(decode(t, got), decode(t, want))
			}
			if (err != nil) != (wantErr != nil) || !same {
				t.Fatalf("%v:\n got %s (%v)\nwant %s (%v)", val, got, err, want, wantErr)
			}
		}
	})
}

func decode(t *testing.T, b []byte) any {
	t.Helper()
	if b == nil {
		return nil
	}
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		t.Fatalf("invalid JSON %q: %v", b, err)
	}
	return x
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
