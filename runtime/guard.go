package runtime

import (
	"fmt"

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
// Wrapped: the ArrayBuffer and typed-array constructors (a Proxy whose
// construct trap checks, so that name, length, prototype, statics,
// instanceof, subclassing and species keep working), String.prototype
// repeat, padStart, padEnd and concat, Array.prototype join and fill,
// Array.from, and JSON.stringify (a replacer that counts the output as it
// is written). Not wrapped, because goja allocates nothing in proportion:
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
const guardSrc = `(function(host) {
'use strict';
const max = host.maxBytes, limitText = host.limitText, account = host.account;
const O = Object, R = Reflect, apply = R.apply, construct = R.construct;
const define = O.defineProperty, getDesc = O.getOwnPropertyDescriptor;
const isArray = Array.isArray, trunc = Math.trunc, NativeString = String, NativeRangeError = RangeError;
const iteratorSym = Symbol.iterator, hasInstanceSym = Symbol.hasInstance;
const ordinaryHasInstance = Function.prototype[hasInstanceSym];
const abByteLength = getDesc(ArrayBuffer.prototype, 'byteLength').get;
const isView = ArrayBuffer.isView;

function tooLarge(what, bytes) {
	throw new NativeRangeError(what + ' of ' + bytes + ' bytes is larger than the ' + limitText + ' a single allocation may take');
}
// check throws when bytes is above the bound, and counts large allocations
// for the run (small ones are not worth a call).
function check(what, bytes) {
	if (bytes > max) tooLarge(what, bytes);
	if (bytes >= 4096) account(bytes);
}
function toInteger(v) { // ToIntegerOrInfinity
	const n = +v;
	return n !== n ? 0 : trunc(n);
}
function toLength(v) {
	const n = toInteger(v);
	return n <= 0 ? 0 : (n > 9007199254740991 ? 9007199254740991 : n);
}
function isArrayBuffer(v) {
	try { apply(abByteLength, v, []); return true; } catch (e) { return false; }
}
// method replaces obj[name] by fn, with the built-in's name, length and
// attributes.
function method(obj, name, fn, length) {
	const d = getDesc(obj, name);
	define(fn, 'name', {value: name, configurable: true});
	define(fn, 'length', {value: length, configurable: true});
	define(obj, name, {value: fn, writable: d.writable, enumerable: d.enumerable, configurable: d.configurable});
}
// guardCtor replaces the global constructor name by a Proxy whose construct
// trap calls checkArgs(args) (which returns the arguments to pass on).
function guardCtor(name, checkArgs) {
	const C = globalThis[name];
	const P = new Proxy(C, {
		construct(target, args, newTarget) {
			return construct(target, checkArgs(args), newTarget === P ? target : newTarget);
		},
	});
	define(C.prototype, 'constructor', {value: P, writable: true, enumerable: false, configurable: true});
	// goja's instanceof cannot see through a Proxy: answer for it.
	define(C, hasInstanceSym, {value: {[hasInstanceSym](v) {
		return apply(ordinaryHasInstance, this === P ? C : this, [v]);
	}}[hasInstanceSym], writable: false, enumerable: false, configurable: false});
	const d = getDesc(globalThis, name);
	define(globalThis, name, {value: P, writable: d.writable, enumerable: d.enumerable, configurable: d.configurable});
}

guardCtor('ArrayBuffer', function(args) {
	if (args.length === 0) return args;
	const n = args[0] === undefined ? 0 : toInteger(args[0]);
	check('ArrayBuffer', n);
	const out = [n];
	for (let i = 1; i < args.length; i++) out.push(args[i]);
	return out;
});
const typedArrays = ['Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array',
	'Int32Array', 'Uint32Array', 'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array', 'Float16Array'];
for (let i = 0; i < typedArrays.length; i++) {
	const name = typedArrays[i], C = globalThis[name];
	if (typeof C !== 'function') continue;
	const size = C.BYTES_PER_ELEMENT;
	guardCtor(name, function(args) {
		if (args.length === 0) return args;
		const a = args[0];
		if ((typeof a !== 'object' && typeof a !== 'function') || a === null) {
			const n = a === undefined ? 0 : toInteger(a);
			check(name, n * size);
			const out = [n];
			for (let i = 1; i < args.length; i++) out.push(args[i]);
			return out;
		}
		if (isArrayBuffer(a)) return args; // a view: allocates nothing
		let n = 0;
		if (isView(a) || isArray(a) || a[iteratorSym] === undefined) n = toLength(a.length);
		check(name, n * size);
		return args;
	});
}

const SP = String.prototype;
const repeat = SP.repeat, padStart = SP.padStart, padEnd = SP.padEnd, concat = SP.concat;
method(SP, 'repeat', {repeat(count) {
	if (this === undefined || this === null) return apply(repeat, this, arguments);
	const s = NativeString(this), n = toInteger(count);
	if (n > 0 && n !== Infinity) check('String.prototype.repeat result', s.length * n * 2);
	return apply(repeat, s, [n]);
}}.repeat, 1);
function pad(name, builtin) {
	return {f(maxLength, fillString) {
		if (this === undefined || this === null) return apply(builtin, this, arguments);
		const s = NativeString(this), n = toLength(maxLength);
		if (n > s.length) check('String.prototype.' + name + ' result', n * 2);
		return apply(builtin, s, [n, fillString]);
	}}.f;
}
method(SP, 'padStart', pad('padStart', padStart), 1);
method(SP, 'padEnd', pad('padEnd', padEnd), 1);
method(SP, 'concat', {concat(arg) {
	if (this === undefined || this === null) return apply(concat, this, arguments);
	const s = NativeString(this), parts = [];
	let total = s.length;
	for (let i = 0; i < arguments.length; i++) {
		const p = NativeString(arguments[i]);
		parts.push(p);
		total += p.length;
	}
	if (total > 2048) check('String.prototype.concat result', total * 2);
	return apply(concat, s, parts);
}}.concat, 1);

const AP = Array.prototype;
const join = AP.join, fill = AP.fill, from = Array.from;
// joining holds the arrays being joined: a cycle joins as '' (as goja's join).
const joining = [];
method(AP, 'join', {join(separator) {
	if (this === undefined || this === null) return apply(join, this, arguments);
	const o = O(this);
	for (let i = 0; i < joining.length; i++) if (joining[i] === o) return '';
	const len = toLength(o.length);
	const sep = separator === undefined ? ',' : NativeString(separator);
	if (len > 1) check('Array.prototype.join result', (len - 1) * sep.length * 2);
	joining.push(o);
	try {
		const parts = [];
		let total = (len > 1 ? (len - 1) * sep.length : 0);
		for (let i = 0; i < len; i++) {
			const x = o[i];
			const p = x === undefined || x === null ? '' : NativeString(x);
			total += p.length;
			if (total * 2 > max) tooLarge('Array.prototype.join result', total * 2);
			parts.push(p);
		}
		if (total > 2048) account(total * 2);
		return apply(join, parts, [sep]);
	} finally {
		joining.pop();
	}
}}.join, 1);
method(AP, 'fill', {fill(value, start, end) {
	if (this === undefined || this === null) return apply(fill, this, arguments);
	const o = O(this), len = toLength(o.length);
	let k = toInteger(start), e = end === undefined ? len : toInteger(end);
	k = k < 0 ? (len + k > 0 ? len + k : 0) : (k < len ? k : len);
	e = e < 0 ? (len + e > 0 ? len + e : 0) : (e < len ? e : len);
	if (e > k) check('Array.prototype.fill of ' + (e - k) + ' elements', (e - k) * 16);
	return apply(fill, o, [value, k, e]);
}}.fill, 1);
method(Array, 'from', {from(items) {
	if (items !== undefined && items !== null && !isArray(items) && items[iteratorSym] === undefined) {
		const n = toLength(O(items).length);
		check('Array.from of ' + n + ' elements', n * 16);
	}
	return apply(from, this, arguments);
}}.from, 1);

const JS = JSON, stringify = JS.stringify;
// bounded is JSON.stringify with its output counted as the replacer sees
// each member (depth from the chain of holders, for the indentation); it
// throws past limit bytes.
function bounded(value, replacer, space, limit) {
	if (isArray(replacer)) return apply(stringify, JS, [value, replacer, space]);
	const user = typeof replacer === 'function' ? replacer : undefined;
	let gap = 0;
	if (typeof space === 'number') gap = space < 1 ? 0 : (space > 10 ? 10 : trunc(space));
	else if (typeof space === 'string') gap = space.length > 10 ? 10 : space.length;
	const holders = [];
	let total = 0;
	function count(key, v) {
		if (user !== undefined) v = apply(user, this, [key, v]);
		while (holders.length > 0 && holders[holders.length - 1] !== this) holders.pop();
		let n = NativeString(key).length + 4 + gap * holders.length;
		switch (typeof v) {
		case 'string': n += v.length; break;
		case 'object': if (v !== null) { holders.push(v); n += 2 + gap * holders.length; } else n += 4; break;
		default: n += 24;
		}
		total += n;
		if (total * 2 > limit) tooLarge('JSON.stringify result', total * 2);
		return v;
	}
	return apply(stringify, JS, [value, count, space]);
}
method(JS, 'stringify', {stringify(value, replacer, space) {
	return bounded(value, replacer, space, max);
}}.stringify, 3);
host.bounded = bounded;
})`

// guardProgram is compiled once per process and shared.
var guardProgram = goja.MustCompile(internalPrefix+"guard", guardSrc, true)

// minAccounted is the smallest allocation the guards report to the run
// (guardSrc's check): smaller ones are not worth a call.
const minAccounted = 4096

// installGuards wraps the built-ins (see guardSrc); it runs before the
// runtime is hardened. It keeps the bounded JSON.stringify for the host's
// own use (log lines, message bodies).
func installGuards(v *vm) error {
	host := v.rt.NewObject()
	_ = host.Set("maxBytes", float64(v.e.cfg.MaxAllocBytes))
	_ = host.Set("limitText", byteSize(v.e.cfg.MaxAllocBytes))
	_ = host.Set("account", func(call goja.FunctionCall) goja.Value {
		if r := v.cur; r != nil {
			r.allocated.Add(uint64(call.Argument(0).ToInteger()))
		}
		return goja.Undefined()
	})
	fn, err := v.rt.RunProgram(guardProgram)
	if err != nil {
		return fmt.Errorf("allocation guards: %w", err)
	}
	install, _ := goja.AssertFunction(fn)
	if _, err := install(goja.Undefined(), host); err != nil {
		return fmt.Errorf("allocation guards: %w", err)
	}
	bounded, ok := goja.AssertFunction(host.Get("bounded"))
	if !ok {
		return fmt.Errorf("allocation guards: no bounded stringify")
	}
	v.boundedStringify = bounded
	return nil
}

// stringifyBounded is JSON.stringify(val) for the host (log lines, message
// bodies): a RangeError past limit bytes of output.
func (v *vm) stringifyBounded(val goja.Value, limit uint64) (goja.Value, error) {
	return v.boundedStringify(goja.Undefined(), val, goja.Undefined(), goja.Undefined(), v.rt.ToValue(float64(limit)))
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
