package runtime

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"

	"github.com/dop251/goja"
)

// Allocation guards. goja allocates what a built-in asks for in one go, in
// Go code that no interrupt reaches: new ArrayBuffer(3e9) takes 3 GB at
// once (or kills the process under an address-space limit) before the
// memory watchdog can look. So the built-ins that make one large value
// from a small request are wrapped when a runtime is built: the wrapper
// computes the size the built-in is about to allocate and throws a
// catchable RangeError when it is above Config.MaxAllocBytes, before the
// built-in runs. Below the bound the built-in runs as before, with the
// arguments already converted (each argument's valueOf/toString runs once,
// in the order the specification gives).
//
// Sizes are estimates of what goja allocates: a string counts 2 bytes per
// UTF-16 code unit (goja keeps a non-ASCII string as UTF-16), an array
// element 16 bytes (a goja.Value), a typed array its byteLength. Gradual
// growth (s += s in a loop, push after push) is left to the watchdog;
// what the guards let through is counted per run (run.allocated) so that
// the watchdog can tell which run grew.
//
// Wrapped, all in Go (a JS wrapper cost 4 to 8 times the built-in's call;
// a Go one costs little): the ArrayBuffer and typed-array constructors (a
// Proxy whose construct trap checks, so that name, length, prototype,
// statics, subclassing and species keep working), String.prototype
// repeat, padStart, padEnd and concat, Array.prototype join and fill,
// Array.from, and JSON.stringify (a replacer counts the output as it is
// written). Not wrapped, because goja allocates nothing in proportion:
// new Array(n), Array(n) and setting length (goja keeps holes unallocated),
// DataView (a view of an existing buffer). The + operator cannot be
// wrapped: a + b is at most twice the largest string, so repeated doubling
// is gradual growth.
//
// Known differences from the bare built-ins, all in corner cases: the
// wrapped constructors have an own Symbol.hasInstance (goja's instanceof
// does not see through a Proxy); a
// typed-array constructor or Array.from given an array-like object reads
// its length (and Symbol.iterator) once more; fill of more than
// MaxAllocBytes/16 elements throws even on an array already that large; a
// JSON.stringify with an array replacer (a property list) is not bounded.
// minAccounted is the smallest allocation the guards report to the run:
// smaller ones are not worth counting.
const minAccounted = 4096

// installGuards wraps the built-ins (see above); it runs before the runtime
// is hardened.
func installGuards(v *vm) error {
	rt := v.rt
	g := rt.GlobalObject()
	v.rangeError = g.Get("RangeError")
	if err := v.guardConstructors(g); err != nil {
		return fmt.Errorf("allocation guards: %w", err)
	}
	sp := g.Get("String").(*goja.Object).Get("prototype").(*goja.Object)
	arr := g.Get("Array").(*goja.Object)
	ap := arr.Get("prototype").(*goja.Object)
	json := g.Get("JSON").(*goja.Object)
	for _, m := range []struct {
		obj    *goja.Object
		name   string
		length int
		wrap   func(builtin goja.Callable) func(goja.FunctionCall) goja.Value
	}{
		{sp, "repeat", 1, v.guardRepeat},
		{sp, "padStart", 1, func(b goja.Callable) func(goja.FunctionCall) goja.Value { return v.guardPad("padStart", b) }},
		{sp, "padEnd", 1, func(b goja.Callable) func(goja.FunctionCall) goja.Value { return v.guardPad("padEnd", b) }},
		{sp, "concat", 1, v.guardConcat},
		{ap, "join", 1, v.guardJoin},
		{ap, "fill", 1, v.guardFill},
		{arr, "from", 1, v.guardFrom},
		{json, "stringify", 3, v.guardStringify},
	} {
		builtin, ok := goja.AssertFunction(m.obj.Get(m.name))
		if !ok {
			return fmt.Errorf("allocation guards: %s is not a function", m.name)
		}
		if err := defineBuiltin(rt, m.obj, m.name, m.length, m.wrap(builtin)); err != nil {
			return fmt.Errorf("allocation guards: %w", err)
		}
	}
	return nil
}

// guardedConstructors are the constructors that allocate what their first
// argument asks for.
var guardedConstructors = []string{"ArrayBuffer", "Int8Array", "Uint8Array", "Uint8ClampedArray", "Int16Array",
	"Uint16Array", "Int32Array", "Uint32Array", "Float32Array", "Float64Array", "BigInt64Array", "BigUint64Array", "Float16Array"}

var arrayBufferType = reflect.TypeFor[goja.ArrayBuffer]()

// guardConstructors replaces each global constructor of guardedConstructors
// by a Proxy of it whose construct trap checks the size first. The
// prototype's constructor becomes the Proxy. goja's instanceof cannot see
// through a Proxy, so the constructor gets an own Symbol.hasInstance that
// answers for it.
func (v *vm) guardConstructors(g *goja.Object) error {
	fproto := g.Get("Function").(*goja.Object).Get("prototype").(*goja.Object)
	hasInstance, ok := goja.AssertFunction(fproto.GetSymbol(goja.SymHasInstance))
	if !ok {
		return fmt.Errorf("no Function.prototype[Symbol.hasInstance]")
	}
	for _, name := range guardedConstructors {
		orig, ok := g.Get(name).(*goja.Object)
		if !ok {
			continue // not in this goja
		}
		ctor, ok := goja.AssertConstructor(orig)
		if !ok {
			return fmt.Errorf("%s is not a constructor", name)
		}
		size := 1.0
		if name != "ArrayBuffer" {
			size = orig.Get("BYTES_PER_ELEMENT").ToFloat()
		}
		var proxy *goja.Object
		p := v.rt.NewProxy(orig, &goja.ProxyTrapConfig{
			Construct: func(target *goja.Object, args []goja.Value, newTarget *goja.Object) *goja.Object {
				args = v.checkNew(name, size, args)
				if newTarget == proxy {
					newTarget = target
				}
				obj, err := ctor(newTarget, args...)
				if err != nil {
					panic(err)
				}
				return obj
			},
		})
		proxy = v.rt.ToValue(p).(*goja.Object)
		hi := v.rt.ToValue(func(call goja.FunctionCall) goja.Value {
			this := call.This
			if this == goja.Value(proxy) {
				this = orig
			}
			return callBuiltin(hasInstance, this, call.Argument(0))
		}).(*goja.Object)
		for _, err := range []error{
			hi.DefineDataProperty("name", v.rt.ToValue("[Symbol.hasInstance]"), goja.FLAG_FALSE, goja.FLAG_TRUE, goja.FLAG_FALSE),
			hi.DefineDataProperty("length", v.rt.ToValue(1), goja.FLAG_FALSE, goja.FLAG_TRUE, goja.FLAG_FALSE),
			orig.DefineDataPropertySymbol(goja.SymHasInstance, hi, goja.FLAG_FALSE, goja.FLAG_FALSE, goja.FLAG_FALSE),
			orig.Get("prototype").(*goja.Object).DefineDataProperty("constructor", proxy, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_FALSE),
			g.DefineDataProperty(name, proxy, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_FALSE),
		} {
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return nil
}

// checkNew checks the size new name(...args) allocates (size bytes per
// element) and returns the arguments to pass on: a length converted once
// (ToIndex's valueOf runs here), or args as they are when the first is an
// object (a buffer to view, or a source to copy: an array, a typed array,
// an array-like; an iterable other than an array grows a list first,
// element by element).
func (v *vm) checkNew(name string, size float64, args []goja.Value) []goja.Value {
	if len(args) == 0 {
		return args
	}
	o, isObj := args[0].(*goja.Object)
	if !isObj || name == "ArrayBuffer" {
		n := 0.0
		if !goja.IsUndefined(args[0]) {
			n = toInteger(args[0])
		}
		v.check(name, n*size)
		out := slices.Clone(args)
		out[0] = v.rt.ToValue(n)
		return out
	}
	n := 0.0
	switch t := o.ExportType(); {
	case t == arrayBufferType:
		return args // a view: allocates nothing
	case o.ClassName() == "Array", t != nil && t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Interface, // a typed array
		goja.IsUndefined(orUndefined(o.GetSymbol(goja.SymIterator))):
		n = toLength(o.Get("length"))
	}
	v.check(name, n*size)
	return args
}

// defineBuiltin sets obj[name] to fn as a built-in method: writable,
// configurable, not enumerable, with the given name and length.
func defineBuiltin(rt *goja.Runtime, obj *goja.Object, name string, length int, fn func(goja.FunctionCall) goja.Value) error {
	f := rt.ToValue(fn).(*goja.Object)
	for _, err := range []error{
		f.DefineDataProperty("name", rt.ToValue(name), goja.FLAG_FALSE, goja.FLAG_TRUE, goja.FLAG_FALSE),
		f.DefineDataProperty("length", rt.ToValue(length), goja.FLAG_FALSE, goja.FLAG_TRUE, goja.FLAG_FALSE),
		obj.DefineDataProperty(name, f, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_FALSE),
	} {
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// account counts bytes a guard let through against the current run.
func (v *vm) account(bytes float64) {
	if r := v.cur; r != nil && bytes >= minAccounted {
		r.allocated.Add(uint64(bytes))
	}
}

// check throws a RangeError in the script when bytes is above the bound,
// else counts them for the run.
func (v *vm) check(what string, bytes float64) {
	if limit := float64(v.e.cfg.MaxAllocBytes); bytes > limit {
		obj, err := v.rt.New(v.rangeError, v.rt.ToValue(fmt.Sprintf("%s of %s bytes is larger than the %s a single allocation may take",
			what, strconv.FormatFloat(bytes, 'f', -1, 64), byteSize(v.e.cfg.MaxAllocBytes))))
		if err != nil {
			panic(v.rt.NewGoError(err))
		}
		panic(obj)
	}
	v.account(bytes)
}

// callBuiltin calls a built-in from a wrapper; what it throws keeps
// propagating in the script (an exception stays catchable, an interrupt
// does not).
func callBuiltin(fn goja.Callable, this goja.Value, args ...goja.Value) goja.Value {
	ret, err := fn(this, args...)
	if err != nil {
		panic(err)
	}
	return ret
}

func nullish(val goja.Value) bool {
	return val == nil || goja.IsUndefined(val) || goja.IsNull(val)
}

// toInteger is ToIntegerOrInfinity (valueOf runs here, once).
func toInteger(val goja.Value) float64 {
	if val == nil {
		return 0 // a property that is not there
	}
	f := val.ToFloat()
	if math.IsNaN(f) {
		return 0
	}
	return math.Trunc(f)
}

// toLength is ToLength.
func toLength(val goja.Value) float64 {
	return min(max(toInteger(val), 0), 1<<53-1)
}

// toJSString is ToString: an object's toString (or valueOf) runs once; a
// Symbol throws a TypeError.
func (v *vm) toJSString(val goja.Value) goja.String {
	val = val.ToString() // an object's primitive (hint string); primitives as they are
	if s, ok := val.(goja.String); ok {
		return s
	}
	if _, ok := val.(*goja.Symbol); ok {
		panic(v.rt.NewTypeError("Cannot convert a Symbol value to a string"))
	}
	return v.rt.ToValue(val.String()).(goja.String)
}

// strLen is the length of a JS string in UTF-16 code units.
func strLen(val goja.Value) float64 {
	if s, ok := val.(goja.String); ok {
		return float64(s.Length())
	}
	return float64(len(val.String()))
}

// argsOf returns call's arguments with at least n entries (undefined).
func argsOf(call goja.FunctionCall, n int) []goja.Value {
	args := call.Arguments
	for len(args) < n {
		args = append(args, goja.Undefined())
	}
	return args
}

// guardRepeat wraps String.prototype.repeat(count).
func (v *vm) guardRepeat(builtin goja.Callable) func(goja.FunctionCall) goja.Value {
	return func(call goja.FunctionCall) goja.Value {
		if nullish(call.This) {
			return callBuiltin(builtin, call.This, call.Arguments...)
		}
		s := v.toJSString(call.This)
		n := toInteger(call.Argument(0))
		if n > 0 && !math.IsInf(n, 1) {
			v.check("String.prototype.repeat result", strLen(s)*n*2)
		}
		return callBuiltin(builtin, s, v.rt.ToValue(n))
	}
}

// guardPad wraps String.prototype.padStart and padEnd(maxLength, fillString).
func (v *vm) guardPad(name string, builtin goja.Callable) func(goja.FunctionCall) goja.Value {
	what := "String.prototype." + name + " result"
	return func(call goja.FunctionCall) goja.Value {
		if nullish(call.This) {
			return callBuiltin(builtin, call.This, call.Arguments...)
		}
		s := v.toJSString(call.This)
		n := toLength(call.Argument(0))
		if n > strLen(s) {
			v.check(what, n*2)
		}
		return callBuiltin(builtin, s, v.rt.ToValue(n), call.Argument(1))
	}
}

// guardConcat wraps String.prototype.concat(...args).
func (v *vm) guardConcat(builtin goja.Callable) func(goja.FunctionCall) goja.Value {
	return func(call goja.FunctionCall) goja.Value {
		if nullish(call.This) {
			return callBuiltin(builtin, call.This, call.Arguments...)
		}
		s := v.toJSString(call.This)
		total := strLen(s)
		parts := make([]goja.Value, len(call.Arguments))
		for i, a := range call.Arguments {
			parts[i] = v.toJSString(a)
			total += strLen(parts[i])
		}
		v.check("String.prototype.concat result", total*2)
		return callBuiltin(builtin, s, parts...)
	}
}

// guardJoin wraps Array.prototype.join(separator). It converts each
// element once, as join does, checking the size as it goes, and joins the
// strings itself; an array being joined joins as "" within itself, as
// goja's join does.
func (v *vm) guardJoin(builtin goja.Callable) func(goja.FunctionCall) goja.Value {
	const what = "Array.prototype.join result"
	return func(call goja.FunctionCall) goja.Value {
		if nullish(call.This) {
			return callBuiltin(builtin, call.This, call.Arguments...)
		}
		o := call.This.ToObject(v.rt)
		if slices.Contains(v.joining, o) {
			return v.rt.ToValue("")
		}
		n := toLength(o.Get("length"))
		sep := goja.Value(v.rt.ToValue(","))
		if a := call.Argument(0); !goja.IsUndefined(a) {
			sep = v.toJSString(a)
		}
		sepLen := strLen(sep)
		if n > 1 {
			v.check(what, (n-1)*sepLen*2)
		}
		v.checkWalk("Array.prototype.join", n) // an empty separator takes nothing per hole
		v.joining = append(v.joining, o)
		defer func() { v.joining = v.joining[:len(v.joining)-1] }()
		var b goja.StringBuilder
		total := max(n-1, 0) * sepLen
		limit := float64(v.e.cfg.MaxAllocBytes)
		for i := 0; float64(i) < n; i++ {
			if i > 0 {
				b.WriteString(sep.(goja.String))
			}
			x := o.Get(strconv.Itoa(i))
			if nullish(x) {
				continue
			}
			p := v.toJSString(x)
			if total += strLen(p); total*2 > limit {
				v.check(what, total*2)
			}
			b.WriteString(p.(goja.String))
		}
		v.account(total * 2)
		return b.String()
	}
}

// guardFill wraps Array.prototype.fill(value, start, end): goja grows an
// array with holes to the filled length, element by element, in Go.
func (v *vm) guardFill(builtin goja.Callable) func(goja.FunctionCall) goja.Value {
	return func(call goja.FunctionCall) goja.Value {
		if nullish(call.This) {
			return callBuiltin(builtin, call.This, call.Arguments...)
		}
		o := call.This.ToObject(v.rt)
		n := toLength(o.Get("length"))
		rel := func(x float64) float64 {
			if x < 0 {
				return max(n+x, 0)
			}
			return min(x, n)
		}
		k, e := rel(toInteger(call.Argument(1))), n
		if end := call.Argument(2); !goja.IsUndefined(end) {
			e = rel(toInteger(end))
		}
		if e > k {
			v.check("Array.prototype.fill of "+strconv.FormatFloat(e-k, 'f', -1, 64)+" elements", (e-k)*16)
		}
		return callBuiltin(builtin, o, call.Argument(0), v.rt.ToValue(k), v.rt.ToValue(e))
	}
}

// guardFrom wraps Array.from(items, mapFn, thisArg): an array-like that is
// not iterable is copied element by element, in Go, to its length.
func (v *vm) guardFrom(builtin goja.Callable) func(goja.FunctionCall) goja.Value {
	return func(call goja.FunctionCall) goja.Value {
		if o, ok := call.Argument(0).(*goja.Object); ok && o.ClassName() != "Array" && goja.IsUndefined(orUndefined(o.GetSymbol(goja.SymIterator))) {
			n := toLength(o.Get("length"))
			v.check("Array.from of "+strconv.FormatFloat(n, 'f', -1, 64)+" elements", n*16)
		}
		return callBuiltin(builtin, call.This, call.Arguments...)
	}
}

func orUndefined(val goja.Value) goja.Value {
	if val == nil {
		return goja.Undefined()
	}
	return val
}

// guardStringify wraps JSON.stringify(value, replacer, space).
func (v *vm) guardStringify(builtin goja.Callable) func(goja.FunctionCall) goja.Value {
	v.jsonBuiltin = builtin
	return func(call goja.FunctionCall) goja.Value {
		args := argsOf(call, 3)
		return v.stringifyWithin(args[0], args[1], args[2], float64(v.e.cfg.MaxAllocBytes))
	}
}

// stringifyWithin is JSON.stringify(value, replacer, space) throwing a
// RangeError once its output would pass limit bytes: a replacer (around
// the script's own, if any) counts each member as it is written, with its
// indentation (the depth follows the chain of holders). A property-list
// replacer (an array) is not bounded.
func (v *vm) stringifyWithin(value, replacer, space goja.Value, limit float64) goja.Value {
	if o, ok := replacer.(*goja.Object); ok && o.ClassName() == "Array" {
		return callBuiltin(v.jsonBuiltin, goja.Undefined(), value, replacer, space)
	}
	user, _ := goja.AssertFunction(replacer)
	gap := 0.0
	switch s := space.(type) {
	case goja.String:
		gap = min(strLen(s), 10)
	default:
		if !nullish(space) && space.ExportType() != nil && (space.ExportType().Kind() == reflect.Float64 || space.ExportType().Kind() == reflect.Int64) {
			gap = min(max(toInteger(space), 0), 10)
		}
	}
	var holders []*goja.Object
	total := 0.0
	count := func(call goja.FunctionCall) goja.Value {
		holder, _ := call.This.(*goja.Object)
		key, val := call.Argument(0), call.Argument(1)
		if user != nil {
			val = callBuiltin(user, call.This, key, val)
		}
		for len(holders) > 0 && holders[len(holders)-1] != holder {
			holders = holders[:len(holders)-1]
		}
		n := strLen(key) + 4 + gap*float64(len(holders))
		switch x := val.(type) {
		case goja.String:
			n += strLen(x)
		case *goja.Object:
			if _, fn := goja.AssertFunction(x); !fn {
				holders = append(holders, x)
				n += 2 + gap*float64(len(holders))
			}
		default:
			n += 24
		}
		if total += n; total*2 > limit {
			v.check("JSON.stringify result", total*2)
		}
		return val
	}
	return callBuiltin(v.jsonBuiltin, goja.Undefined(), value, v.rt.ToValue(count), space)
}

// stringifyBounded is JSON.stringify(val) for the host (log lines, message
// bodies, delegated result encoding): an error past limit bytes of output.
func (v *vm) stringifyBounded(val goja.Value, limit uint64) (ret goja.Value, err error) {
	if limit == 0 {
		limit = 1 // nothing fits, not "no limit"
	}
	exc := v.rt.Try(func() { ret = v.stringifyWithin(val, goja.Undefined(), goja.Undefined(), float64(limit)) })
	if exc != nil {
		return nil, exc
	}
	return ret, nil
}

// byteSize writes n as the guards' messages do: "128 MiB" when n is a
// whole number of MiB, else "n bytes".
func byteSize(n uint64) string {
	const mib = 1 << 20
	if n >= mib && n%mib == 0 {
		return fmt.Sprintf("%d MiB", n/mib)
	}
	return fmt.Sprintf("%d bytes", n)
}
