package runtime

import (
	"strings"
	"testing"

	"github.com/dop251/goja"
)

// describeSrc renders a JSON.parse outcome: values, key order, prototypes,
// property attributes, -0, and the error's type and message.
const describeSrc = `(function(s, reviver) {
	function d(v) {
		if (Array.isArray(v)) return (Object.getPrototypeOf(v) === Array.prototype ? "" : "!") + "[" + v.map(d).join(",") + "]";
		if (v && typeof v === "object") return (Object.getPrototypeOf(v) === Object.prototype ? "" : "!") + "{" +
			Object.getOwnPropertyNames(v).map(k => { const p = Object.getOwnPropertyDescriptor(v, k);
				return JSON.stringify(k) + (p.writable && p.enumerable && p.configurable ? ":" : "?:") + d(v[k]) }).join(",") + "}";
		return typeof v + ":" + (Object.is(v, -0) ? "-0" : String(v));
	}
	try { return "ok " + d(JSON.parse(s, reviver)) } catch (e) { return "error " + e.name + ": " + e.message }
})`

// jsonParseChecker compares opsrunner's JSON.parse with goja's own.
type jsonParseChecker struct {
	fast, ref goja.Callable
	fastRT    *goja.Runtime
}

func newJSONParseChecker(t testing.TB) *jsonParseChecker {
	t.Helper()
	e := newEngine(t, Config{MaxCallStackSize: 10000}) // describeSrc recurses
	v, err := newVM(e)
	if err != nil {
		t.Fatal(err)
	}
	c := &jsonParseChecker{fastRT: v.rt}
	for _, x := range []struct {
		rt  *goja.Runtime
		dst *goja.Callable
	}{{v.rt, &c.fast}, {goja.New(), &c.ref}} {
		fn, err := x.rt.RunString(describeSrc)
		if err != nil {
			t.Fatal(err)
		}
		*x.dst, _ = goja.AssertFunction(fn)
	}
	return c
}

func (c *jsonParseChecker) check(t *testing.T, s string) {
	t.Helper()
	got, err := c.fast(goja.Undefined(), c.fastRT.ToValue(s))
	if err != nil {
		t.Fatal(err)
	}
	want, err := c.ref(goja.Undefined(), goja.New().ToValue(s))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(want.String(), "cannot unmarshal number") {
		// goja throws on a number beyond float64's range, where JSON.parse
		// gives ±Infinity (TestJSONParseOverflowIsInfinity); a later syntax
		// error may still make ours throw.
		if g := got.String(); strings.HasPrefix(g, "ok ") && !strings.Contains(g, "Infinity") {
			t.Fatalf("JSON.parse(%q) = %s, want an Infinity in it", s, g)
		}
		return
	}
	if got.String() != want.String() {
		t.Fatalf("JSON.parse(%q):\n got %s\nwant %s", s, got, want)
	}
}

var jsonParseInputs = []string{
	`{"id": 42, "name": "widget", "tags": ["a", "b"], "price": 9.5}`,
	` {} `, `[]`, `[[], {}, [{}]]`, `0`, `-0`, `-0.0`, `1e3`, `1E+2`, `1.5e-3`, `123456789012345678901234567890`,
	`9007199254740993`, `-1e-400`, `0.1`, `"x"`, `""`, `true`, `false`, `null`,
	`{"a": 1, "a": 2, "b": 3}`, `{"__proto__": {"x": 1}}`, `{"__defineGetter__": 1, "toString": 2, "constructor": 3, "hasOwnProperty": 4}`,
	`{"2": "b", "1": "a", "x": 0}`, `"\u00e9\n\t\"\\\/\b\f\r"`, `"\ud83d\ude00"`, `"\ud800"`, `"\udc00x"`, `"é😀"`,
	`"\u0000"`, `"a` + "\x01" + `"`, `"\x"`, `"\u12"`, `"\u12g4"`,
	`01`, `-`, `1.`, `.5`, `1e`, `+1`, `NaN`, `Infinity`, `tru`, `nul`, `[1,]`, `{"a":1,}`, `{,}`, `[,1]`, `{"a" 1}`, `{a: 1}`, `{'a': 1}`,
	`[1] [2]`, `1 2`, `[`, `{`, `{"a":`, ``, ` `, "\t\n\r 1 \n", "\u00a01", `[1 2]`, `{"a":1 "b":2}`,
}

func TestJSONParseMatchesGoja(t *testing.T) {
	t.Parallel()
	c := newJSONParseChecker(t)
	for _, s := range jsonParseInputs {
		c.check(t, s)
	}
	deep := ""
	for range 600 {
		deep = "[" + deep + "]"
	}
	c.check(t, deep)

	t.Run("reviver and non-strings", func(t *testing.T) {
		e := newEngine(t, Config{})
		res := runOne(t, e, `function handle() {
			const r = JSON.parse('{"a": 1, "b": [2]}', (k, v) => typeof v === "number" ? v * 10 : v);
			let err; try { JSON.parse(Symbol()) } catch (e) { err = e.name }
			return [r, JSON.parse(12), JSON.parse({toString() { return '"o"' }}), err, JSON.parse.name, JSON.parse.length,
				Object.isFrozen(JSON), String(JSON.parse).includes("native code")]
		}`, nil)
		want := `[{"a":10,"b":[20]},12,"o","TypeError","parse",2,true,true]`
		if got := string(res.JSON); res.Err != nil || got != want {
			t.Fatalf("got %s %v, want %s", got, res.Err, want)
		}
	})
}

// A number literal beyond float64's range parses as ±Infinity (ECMA-262
// JSON.parse through StringToNumber; Node and browsers agree), not as an
// error as in goja's own JSON.parse.
func TestJSONParseOverflowIsInfinity(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	res := runOne(t, e, `function handle() {
		const v = JSON.parse('[1e400, -1e400, 1e-400, {"big": 123e999}]');
		return [String(v[0]), String(v[1]), v[2], String(v[3].big)];
	}`, nil)
	if want := `["Infinity","-Infinity",0,"Infinity"]`; res.Err != nil || string(res.JSON) != want {
		t.Fatalf("got %s %v, want %s", res.JSON, res.Err, want)
	}
}

func FuzzJSONParse(f *testing.F) {
	for _, s := range jsonParseInputs {
		f.Add(s)
	}
	c := newJSONParseChecker(f)
	f.Fuzz(func(t *testing.T, s string) {
		c.check(t, s)
	})
}
