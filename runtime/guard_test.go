package runtime

import (
	"context"
	"strings"
	"testing"

	"github.com/dop251/goja"
	"github.com/opsrunner/opsrunner/store"
)

// guardCases: for each wrapped built-in, expressions whose value must be
// what the bare built-in gives (normal), and one that asks for more than
// MaxAllocBytes at once (huge). ours says the RangeError is the guard's
// (else the built-in's own RangeError is expected: nothing to guard).
var guardCases = []struct {
	name   string
	normal []string
	huge   string
	ours   bool
}{
	{"ArrayBuffer", []string{
		`new ArrayBuffer(16).byteLength`, `new ArrayBuffer().byteLength`,
		`(() => { let n = 0; const b = new ArrayBuffer({valueOf() { n++; return 8 }}); return [b.byteLength, n] })()`,
		`[ArrayBuffer.name, ArrayBuffer.length, new ArrayBuffer(1).constructor === ArrayBuffer, new ArrayBuffer(1) instanceof ArrayBuffer]`,
		`(() => { try { ArrayBuffer(1) } catch (e) { return String(e) } })()`,
		`(() => { try { new ArrayBuffer(-1) } catch (e) { return e instanceof RangeError } })()`,
		`new ArrayBuffer(8).slice(2).byteLength`,
	}, `new ArrayBuffer(3e9)`, true},
	{"Uint8Array", []string{
		`Array.from(new Uint8Array(4))`, `Array.from(new Uint8Array([1, 2, 300]))`,
		`new Uint8Array(new ArrayBuffer(8), 2, 4).length`,
		`Array.from(new Uint8Array({length: 2, 0: 5}))`,
		`Array.from(new Uint8Array(new Set([1, 2])))`,
		`Array.from(Uint8Array.from({length: 3}))`, `Array.from(Uint8Array.of(1, 2))`,
		`Array.from(new Uint8Array([1, 2]).map(x => x * 2))`,
		`new Uint8Array([1, 2, 3]).subarray(1).constructor === Uint8Array`,
		`[Uint8Array.name, Uint8Array.length, Uint8Array.BYTES_PER_ELEMENT, Object.getPrototypeOf(Uint8Array) === Object.getPrototypeOf(Int8Array)]`,
		`(() => { class X extends Uint8Array {}; const x = new X(4); return [x instanceof X, x instanceof Uint8Array, x.length] })()`,
		`(() => { try { Uint8Array(1) } catch (e) { return String(e) } })()`,
	}, `new Uint8Array(3e9)`, true},
	{"Float64Array of a length", []string{`new Float64Array(3).length`}, `new Float64Array(1e9)`, true},
	{"Int32Array of an array", []string{`Array.from(new Int32Array([1, 2]))`}, `new Int32Array(Array(1e9))`, true},
	{"Float32Array of an array-like", []string{`new Float32Array({length: 3}).length`}, `new Float32Array({length: 3e9})`, true},
	{"BigInt64Array", []string{`new BigInt64Array(2).length`}, `new BigInt64Array(1e9)`, true},
	{"TypedArray.from", []string{`Uint16Array.from({length: 2}).length`}, `Uint16Array.from({length: 3e9})`, true},
	{"DataView (a view: allocates nothing)", []string{
		`new DataView(new ArrayBuffer(8), 2).byteLength`, `new DataView(new ArrayBuffer(8)).getInt8(0)`,
	}, `new DataView(new ArrayBuffer(8), 0, 3e9)`, false},
	{"String.prototype.repeat", []string{
		`"ab".repeat(3)`, `"x".repeat(0)`, `"x".repeat("2")`, `String.prototype.repeat.call(5, 2)`,
		`(() => { try { "x".repeat(-1) } catch (e) { return String(e) } })()`,
		`(() => { try { "x".repeat(Infinity) } catch (e) { return String(e) } })()`,
		`(() => { try { String.prototype.repeat.call(null, 1) } catch (e) { return String(e) } })()`,
		`(() => { try { new "".repeat(1) } catch (e) { return e instanceof TypeError } })()`,
		`(() => { const log = []; const s = String.prototype.repeat.call({toString() { log.push("this"); return "a" }}, {valueOf() { log.push("count"); return 2 }}); return [s, log] })()`,
		`[String.prototype.repeat.name, String.prototype.repeat.length, "prototype" in String.prototype.repeat]`,
	}, `"x".repeat(3e9)`, true},
	{"String.prototype.padStart", []string{
		`"5".padStart(3, "0")`, `"é".padStart(4, "ü")`, `"x".padStart({valueOf() { return 3 }})`, `"abc".padStart(2)`, `"a".padStart(4)`, `[String.prototype.padStart.name, String.prototype.padStart.length]`,
		`(() => { try { String.prototype.padStart.call(undefined, 1) } catch (e) { return String(e) } })()`,
	}, `"x".padStart(3e9)`, true},
	{"String.prototype.padEnd", []string{
		`"abc".padEnd(6, "12")`, `"abc".padEnd(6, "")`, `[String.prototype.padEnd.name, String.prototype.padEnd.length]`,
	}, `"x".padEnd(2 ** 31, "ab")`, true},
	{"String.prototype.concat", []string{
		`"a".concat(1, null, undefined, [2, 3], {})`, `"é".concat("ü", 1.5)`,
		`(() => { try { "a".concat(Symbol()) } catch (e) { return e instanceof TypeError } })()`, `"".concat()`, `[String.prototype.concat.name, String.prototype.concat.length]`,
	}, `(s => s.concat(s, s, s, s, s, s, s, s, s))("x".repeat(2e7))`, true},
	{"Array.prototype.join", []string{
		`[1, null, undefined, "a", [2, [3]]].join("-")`, `[1, 2].join()`, `[].join()`, `String([1, [2, 3]])`,
		`(() => { const a = [1]; a.push(a); return a.join() })()`,
		`Array.prototype.join.call({length: 2, 0: "x", 1: "y"}, "+")`, `Array.prototype.join.call("abc", ".")`,
		`(() => { try { Array.prototype.join.call(null) } catch (e) { return String(e) } })()`,
		`[Array.prototype.join.name, Array.prototype.join.length]`,
		`(() => { const log = []; const o = {toString() { log.push("o"); return "x" }}; return [[o, o].join(), log] })()`,
		`[1.5, -0, 1e21, true, {}, NaN].join()`, `["\ud800", "a"].join("\udc00") === "\ud800\udc00a"`, `["é", "ü"].join("—")`,
		`(() => { try { [Symbol()].join() } catch (e) { return e instanceof TypeError } })()`,
	}, `Array(1e9).join("ab")`, true},
	{"Array.prototype.join of large elements", []string{`Array(3).fill("xy").join("")`}, `Array(2000).fill("x".repeat(1e5)).join()`, true},
	{"Array.prototype.fill", []string{
		`[1, 2, 3, 4].fill(0, 1, -1)`, `Array(3).fill(7)`, `[1, 2, 3].fill(9, -2)`, `Array.prototype.fill.call({length: 2}, 1)`,
		`[Array.prototype.fill.name, Array.prototype.fill.length]`,
	}, `Array(1e9).fill(0)`, true},
	{"Array(n) (holes are not allocated)", []string{
		`Array(2 ** 32 - 1).length`, `new Array(3).length`, `(() => { const a = []; a.length = 1e9; return a.length })()`,
	}, `new Array(2 ** 32)`, false},
	{"Array.from", []string{
		`Array.from({length: 3}, (_, i) => i * 2)`, `Array.from("abc")`, `Array.from(new Set([1, 1, 2]))`,
		`[Array.from.name, Array.from.length]`,
	}, `Array.from({length: 1e9})`, true},
	{"JSON.stringify", []string{
		`JSON.stringify({a: [1, "x", {b: null}], c: true})`, `JSON.stringify({a: [1, {b: 2}]}, null, 2)`,
		`JSON.stringify({a: 1, b: [2, 3]}, (k, v) => typeof v === "number" ? v + 1 : v, "\t")`,
		`JSON.stringify({a: 1, b: 2, c: {a: 3}}, ["a", "c"])`, `JSON.stringify({toJSON() { return [1] }})`,
		`JSON.stringify(undefined)`, `JSON.stringify("x")`,
		`(() => { try { const a = {}; a.a = a; JSON.stringify(a) } catch (e) { return String(e) } })()`,
		`[JSON.stringify.name, JSON.stringify.length]`,
	}, `(() => { let x = ["x".repeat(1e6)]; for (let i = 0; i < 10; i++) x = [x, x]; return JSON.stringify(x) })()`, true},
}

// evalJSON evaluates expr in rt and returns JSON.stringify of its value
// (the built-in's, captured before any script ran) or the error.
func evalJSON(t *testing.T, rt *goja.Runtime, stringify goja.Callable, expr string) string {
	t.Helper()
	val, err := rt.RunString(expr)
	if err != nil {
		return "error: " + err.Error()
	}
	s, err := stringify(goja.Undefined(), val)
	if err != nil {
		return "stringify error: " + err.Error()
	}
	return s.String()
}

// TestAllocationGuardsKeepNormalBehaviour: for normal sizes, a guarded
// built-in gives what the bare goja built-in gives.
func TestAllocationGuardsKeepNormalBehaviour(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{NoPrewarm: true})
	v, err := newVM(e)
	if err != nil {
		t.Fatal(err)
	}
	bare := goja.New()
	bareStringify, _ := goja.AssertFunction(bare.GlobalObject().Get("JSON").(*goja.Object).Get("stringify"))
	for _, c := range guardCases {
		for _, expr := range c.normal {
			got, want := evalJSON(t, v.rt, v.stringify, expr), evalJSON(t, bare, bareStringify, expr)
			if got != want {
				t.Errorf("%s: %s\n got %s\nwant %s (bare goja)", c.name, expr, got, want)
			}
		}
	}
}

// TestAllocationGuardsThrowRangeError: a request for more than
// MaxAllocBytes at once is a RangeError the script catches, before
// anything is allocated; the run goes on.
func TestAllocationGuardsThrowRangeError(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{MemoryLimit: 1 << 30}) // MaxAllocBytes: 128 MiB
	for _, c := range guardCases {
		t.Run(c.name, func(t *testing.T) {
			src := `function handle() {
				let caught = null;
				try { ` + c.huge + ` } catch (e) { caught = [e instanceof RangeError, e.message] }
				return {caught, after: "x".repeat(3)};
			}`
			res := runOne(t, e, src, nil)
			if res.Err != nil {
				t.Fatalf("%s: err %v", c.huge, res.Err)
			}
			got, _ := res.value().(map[string]any)
			caught, _ := got["caught"].([]any)
			if len(caught) != 2 || caught[0] != true || got["after"] != "xxx" {
				t.Fatalf("%s: got %s, want a caught RangeError and the run going on", c.huge, res.JSON)
			}
			msg, _ := caught[1].(string)
			if c.ours && !strings.HasSuffix(msg, "bytes is larger than the 128 MiB a single allocation may take") {
				t.Fatalf("%s: message %q", c.huge, msg)
			}
		})
	}
}

// TestAllocationGuardMessage: the uncaught RangeError fails the run with
// the script's position and our message.
func TestAllocationGuardMessage(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{MemoryLimit: 1 << 30})
	res := runOne(t, e, "function handle() {\n  return new ArrayBuffer(3e9).byteLength\n}", nil)
	if res.Status != store.StatusFailed {
		t.Fatalf("status %s err %v", res.Status, res.Err)
	}
	se := scriptErr(t, res.Err)
	want := "RangeError: ArrayBuffer of 3000000000 bytes is larger than the 128 MiB a single allocation may take"
	if se.Message != want || se.File != "operations/op0.js" || se.Line != 2 {
		t.Fatalf("got %s:%d:%d %q, want line 2 %q", se.File, se.Line, se.Column, se.Message, want)
	}
}

// TestMaxAllocBytes: the bound is a Config field.
func TestMaxAllocBytes(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{MaxAllocBytes: 1 << 20})
	res := runOne(t, e, `function handle() { new ArrayBuffer(1 << 20); try { new ArrayBuffer((1 << 20) + 1) } catch (e) { return e.message } }`, nil)
	if want := `"ArrayBuffer of 1048577 bytes is larger than the 1 MiB a single allocation may take"`; string(res.JSON) != want {
		t.Fatalf("got %s %v, want %s", res.JSON, res.Err, want)
	}
}

// TestResultJSONIsBounded: a result whose JSON would exceed MaxAllocBytes
// (parts shared: exponentially larger than the value) fails the run.
func TestResultJSONIsBounded(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{MaxAllocBytes: 1 << 20})
	res := runOne(t, e, `function handle() { let x = ["x".repeat(1e4)]; for (let i = 0; i < 30; i++) x = [x, x]; return x }`, nil)
	if res.Status != store.StatusFailed || res.Err == nil || !strings.Contains(res.Err.Error(), "larger than the 1 MiB a single allocation may take") {
		t.Fatalf("status %s err %v", res.Status, res.Err)
	}
	_ = context.Background
}
