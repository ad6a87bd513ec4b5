package runtime

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/dop251/goja"
)

// Walk guards. Many Array.prototype methods walk an array from 0 to its
// length in Go, where no interrupt reaches: on an array with holes, whose
// length costs nothing (Array(4e9), a.length = 4e9), indexOf, includes,
// forEach, reverse or join run for minutes past any time limit, holding
// their worker, and map, slice or toSorted allocate length × 16 bytes at
// once (Array(4e9).map(f) asks for 64 GB and kills the process). The same
// holds for an argument list built from an array-like (f.apply(null,
// {length: 4e9})). So these built-ins are wrapped: a call that would walk
// more elements than a single allocation may hold (Config.MaxAllocBytes /
// 16, a goja.Value's size; 8 Mi elements by default) throws a catchable
// RangeError before the built-in runs. Below that, the walk takes well
// under a second and the built-in runs unchanged (the wrapper reads the
// length once more, which only a length getter can tell).
//
// Methods whose walk runs JavaScript each step (a callback for every
// element present) are wrapped too: on a sparse array the callback is
// never called, so nothing interrupts the walk either.

// walkingMethods are the Array.prototype methods that walk this's length.
var walkingMethods = []string{
	"copyWithin", "every", "filter", "find", "findIndex", "findLast", "findLastIndex", "flat", "flatMap",
	"forEach", "includes", "indexOf", "lastIndexOf", "map", "reduce", "reduceRight", "reverse", "shift",
	"slice", "some", "sort", "splice", "toLocaleString", "toReversed", "toSorted", "toSpliced", "unshift", "with",
	// The iterators: what iterates them in Go (spread, Array.from, new
	// Set) walks the holes too.
	"values", "keys", "entries",
}

// installWalkGuards wraps walkingMethods, Array.prototype.concat,
// Function.prototype.apply, Reflect.apply, Reflect.construct,
// String.prototype.split (see above) and String.prototype.replaceAll. It runs before the runtime is hardened, after installGuards
// (whose join and fill check their own sizes, and walks too).
func installWalkGuards(v *vm) error {
	g := v.rt.GlobalObject()
	ap := g.Get("Array").(*goja.Object).Get("prototype").(*goja.Object)
	fp := g.Get("Function").(*goja.Object).Get("prototype").(*goja.Object)
	reflect := g.Get("Reflect").(*goja.Object)
	wrap := func(obj *goja.Object, name string, guard func(name string, builtin goja.Callable) func(goja.FunctionCall) goja.Value) error {
		val := obj.Get(name)
		builtin, ok := goja.AssertFunction(val)
		if !ok {
			return nil // not in this goja
		}
		length := int(val.(*goja.Object).Get("length").ToInteger())
		return defineBuiltin(v.rt, obj, name, length, guard(name, builtin))
	}
	for _, name := range walkingMethods {
		if err := wrap(ap, name, v.guardWalk); err != nil {
			return fmt.Errorf("walk guards: %w", err)
		}
	}
	for _, w := range []struct {
		obj         *goja.Object
		name, label string
		arg         int // the array-like argument
	}{{fp, "apply", "Function.prototype.apply", 1}, {reflect, "apply", "Reflect.apply", 2}, {reflect, "construct", "Reflect.construct", 1}} {
		guard := func(_ string, builtin goja.Callable) func(goja.FunctionCall) goja.Value {
			return v.guardArgList(w.label, w.arg, builtin)
		}
		if err := wrap(w.obj, w.name, guard); err != nil {
			return fmt.Errorf("walk guards: %w", err)
		}
	}
	if err := wrap(ap, "concat", v.guardArrayConcat); err != nil {
		return fmt.Errorf("walk guards: %w", err)
	}
	sp := g.Get("String").(*goja.Object).Get("prototype").(*goja.Object)
	if err := wrap(sp, "split", v.guardSplit); err != nil {
		return fmt.Errorf("walk guards: %w", err)
	}
	if err := wrap(sp, "replaceAll", v.guardReplaceAll); err != nil {
		return fmt.Errorf("walk guards: %w", err)
	}
	// Spread, for-of, Array.from and new Set iterate through values, which
	// is also Array.prototype[Symbol.iterator]: the same function again.
	if err := ap.DefineDataPropertySymbol(goja.SymIterator, ap.Get("values"), goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_FALSE); err != nil {
		return fmt.Errorf("walk guards: Symbol.iterator: %w", err)
	}
	return nil
}

// maxWalk is how many elements one built-in call may walk.
func (v *vm) maxWalk() float64 { return float64(v.e.cfg.MaxAllocBytes / 16) }

// checkWalk throws a RangeError when n elements are more than one call
// may walk.
func (v *vm) checkWalk(what string, n float64) {
	if n <= v.maxWalk() {
		return
	}
	obj, err := v.rt.New(v.rangeError, v.rt.ToValue(fmt.Sprintf("%s over %s elements is longer than the %s elements a single call may walk",
		what, strconv.FormatFloat(n, 'f', -1, 64), strconv.FormatFloat(v.maxWalk(), 'f', -1, 64))))
	if err != nil {
		panic(v.rt.NewGoError(err))
	}
	panic(obj)
}

// lengthOf is ToLength(o.length) for an object, 0 for anything else.
func lengthOf(val goja.Value) float64 {
	o, ok := val.(*goja.Object)
	if !ok {
		return 0
	}
	return toLength(o.Get("length"))
}

// guardWalk wraps an Array.prototype method that walks this's length.
func (v *vm) guardWalk(name string, builtin goja.Callable) func(goja.FunctionCall) goja.Value {
	what := "Array.prototype." + name
	return func(call goja.FunctionCall) goja.Value {
		if !nullish(call.This) {
			v.checkWalk(what, lengthOf(call.This.ToObject(v.rt)))
		}
		return callBuiltin(builtin, call.This, call.Arguments...)
	}
}

// guardArgList wraps a function that turns its argument at index arg, an
// array-like, into an argument list of its length.
func (v *vm) guardArgList(name string, arg int, builtin goja.Callable) func(goja.FunctionCall) goja.Value {
	return func(call goja.FunctionCall) goja.Value {
		v.checkWalk(name+"'s argument list", lengthOf(call.Argument(arg)))
		return callBuiltin(builtin, call.This, call.Arguments...)
	}
}

// guardArrayConcat wraps Array.prototype.concat: the result walks this and
// every array argument.
func (v *vm) guardArrayConcat(_ string, builtin goja.Callable) func(goja.FunctionCall) goja.Value {
	return func(call goja.FunctionCall) goja.Value {
		var n float64
		if !nullish(call.This) {
			n = lengthOf(call.This.ToObject(v.rt))
		}
		for _, a := range call.Arguments {
			if o, ok := a.(*goja.Object); ok && o.ClassName() == "Array" {
				n += lengthOf(o)
			}
		}
		v.checkWalk("Array.prototype.concat", n)
		return callBuiltin(builtin, call.This, call.Arguments...)
	}
}

// guardSplit wraps String.prototype.split(separator, limit): an empty or
// RegExp separator can cut this into one string per character, an array
// allocated at once in Go ("x".repeat(6e7).split("") makes 6e7 strings).
// Such a split of a string longer than one call may walk throws; a split
// on any other separator makes at most as many parts as there are
// separators, each a slice of this.
func (v *vm) guardSplit(_ string, builtin goja.Callable) func(goja.FunctionCall) goja.Value {
	return func(call goja.FunctionCall) goja.Value {
		sep := call.Argument(0)
		perChar := false
		if o, ok := sep.(*goja.Object); ok {
			perChar = o.ClassName() == "RegExp"
		} else if s, ok := sep.(goja.String); ok {
			perChar = s.Length() == 0
		}
		if perChar && !nullish(call.This) {
			n := strLen(v.toJSString(call.This))
			if limit := call.Argument(1); !goja.IsUndefined(limit) {
				n = min(n, float64(uint32(limit.ToInteger())))
			}
			v.checkWalk("String.prototype.split", n)
		}
		return callBuiltin(builtin, call.This, call.Arguments...)
	}
}

// guardReplaceAll wraps String.prototype.replaceAll(pattern, replacement)
// for a string pattern and replacement: the result, built at once in Go,
// is this with every occurrence replaced, so a long replacement multiplies
// it ("x".repeat(1e7).replaceAll("x", "y".repeat(1000))). A replacement's
// $& patterns insert the match, so each occurrence counts len(replacement)
// × max(1, len(pattern)) at most. Occurrences are counted only when that
// bound with one occurrence per pattern length could pass the limit. A
// RegExp pattern or a function replacement is left as it is.
func (v *vm) guardReplaceAll(_ string, builtin goja.Callable) func(goja.FunctionCall) goja.Value {
	const what = "String.prototype.replaceAll result"
	return func(call goja.FunctionCall) goja.Value {
		pat, ok1 := call.Argument(0).(goja.String)
		repl, ok2 := call.Argument(1).(goja.String)
		if ok1 && ok2 && !nullish(call.This) {
			s := v.toJSString(call.This)
			n, p := float64(s.Length()), float64(pat.Length())
			each := float64(repl.Length()) * max(1, p)
			limit := float64(v.e.cfg.MaxAllocBytes)
			if (n+(n/max(p, 1)+1)*each)*2 > limit {
				count := float64(strings.Count(s.String(), pat.String()))
				if p == 0 {
					count = n + 1
				}
				v.check(what, (n+count*each)*2)
			}
		}
		return callBuiltin(builtin, call.This, call.Arguments...)
	}
}
