package runtime

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"

	"github.com/dop251/goja"
	"github.com/opsrunner/opsrunner/scripts"
)

// vm is one goja runtime with the host API bound once. It is used by one
// goroutine at a time (between getVM and putVM); the host functions read the
// current run from cur.
type vm struct {
	e  *Engine
	rt *goja.Runtime

	cur *run // the run using this runtime; nil while pooled
	// spare is the last run, zeroed, for the next to reuse (run.release);
	// nil when none can be.
	spare *run

	baseline    map[string]struct{} // global property names after hardening
	baseSymbols int
	globalProto *goja.Object
	// globalNames reads the global object's own string-key count without
	// listing the keys (see ownKeyCounter); nil when unavailable.
	globalNames func() int

	errorCtor goja.Value
	freeze    goja.Callable // Object.freeze
	stringify goja.Callable // the built-in JSON.stringify
	// jsonBuiltin is JSON.stringify as goja defines it, for the guarded
	// one (guard.go); rangeError is the RangeError constructor.
	jsonBuiltin goja.Callable
	rangeError  goja.Value
	// joining are the objects whose join is running (guard.go).
	joining []*goja.Object
	parse   goja.Callable
	thrower goja.Callable
	then    goja.Callable // Promise.prototype.then
	noop    goja.Callable // a JavaScript function doing nothing: calling it raises a pending interrupt
	// fetchJS are js/fetch.js's helpers for host.fetch (fetch.go);
	// lazyHeaders are the headers of the run's fetch responses, by their
	// Headers object, until the run ends (see responseHeaders).
	fetchJS     fetchJS
	lazyHeaders map[*goja.Object]http.Header
	msgCommit   goja.Value
	msgRollbk   goja.Value

	// protoKeys are Object.prototype's own property names (fixed once
	// frozen); see createDataProperty.
	protoKeys map[string]struct{}

	// wrappers caches each program's module wrapper (see wrapper).
	wrappers map[*goja.Program]goja.Callable
	// progs and modules are module.go's caches.
	progs   map[*goja.Program]progInfo
	modules map[moduleKey]loadedFunc

	// lazyKeys are the shared accessors of lazy event fields (lazy.go).
	lazyKeys map[string]accessorPair
	// lastEventKeys are the sorted keys of the last event (eventKeys).
	lastEventKeys []string
	// encStack is encodeJSON's stack array, kept between encodings; nil
	// while an encoding uses it.
	encStack []*goja.Object

	// env is the frozen `env` object last made, for project envOf
	// (settings.go).
	env   *goja.Object
	envOf *scripts.Project

	// broken marks a runtime that must not be pooled again.
	broken bool
}

// internalPrefix names the sources of opsrunner's own JS; their frames are
// hidden from script stacks.
const internalPrefix = "opsrunner:"

func newVM(e *Engine) (v *vm, err error) {
	defer func() {
		if x := recover(); x != nil {
			v, err = nil, fmt.Errorf("new runtime: %v", x)
		}
	}()
	rt := goja.New()
	rt.SetMaxCallStackSize(e.cfg.MaxCallStackSize)
	v = &vm{e: e, rt: rt}
	rt.SetPromiseRejectionTracker(v.trackRejections)
	g := rt.GlobalObject()
	json := g.Get("JSON").(*goja.Object)
	v.stringify, _ = goja.AssertFunction(json.Get("stringify"))
	v.parse, _ = goja.AssertFunction(json.Get("parse"))
	v.errorCtor = g.Get("Error")
	v.freeze, _ = goja.AssertFunction(g.Get("Object").(*goja.Object).Get("freeze"))
	v.then, _ = goja.AssertFunction(g.Get("Promise").(*goja.Object).Get("prototype").(*goja.Object).Get("then"))
	v.wrappers = make(map[*goja.Program]goja.Callable)
	v.progs = make(map[*goja.Program]progInfo)
	v.modules = make(map[moduleKey]loadedFunc)
	if err := installJSONParse(v, json); err != nil {
		return nil, fmt.Errorf("new runtime: %w", err)
	}
	thrower, err := rt.RunString(`(function(e) { throw e; })`)
	if err != nil {
		return nil, fmt.Errorf("new runtime: %w", err)
	}
	v.thrower, _ = goja.AssertFunction(thrower)
	noop, err := rt.RunString(`(function() {})`)
	if err != nil {
		return nil, fmt.Errorf("new runtime: %w", err)
	}
	v.noop, _ = goja.AssertFunction(noop)

	if err := bindHost(v); err != nil {
		return nil, fmt.Errorf("new runtime: %w", err)
	}
	if err := installFetch(v); err != nil {
		return nil, fmt.Errorf("new runtime: %w", err)
	}
	if err := installGuards(v); err != nil {
		return nil, fmt.Errorf("new runtime: %w", err)
	}
	if err := installWalkGuards(v); err != nil {
		return nil, fmt.Errorf("new runtime: %w", err)
	}
	v.msgCommit = rt.ToValue(v.jsMessageCommit)
	v.msgRollbk = rt.ToValue(v.jsMessageRollback)

	if err := harden(v); err != nil {
		return nil, fmt.Errorf("new runtime: %w", err)
	}
	v.baseline = make(map[string]struct{})
	for _, k := range g.GetOwnPropertyNames() {
		v.baseline[k] = struct{}{}
	}
	v.protoKeys = make(map[string]struct{})
	for _, k := range g.Get("Object").(*goja.Object).Get("prototype").(*goja.Object).GetOwnPropertyNames() {
		v.protoKeys[k] = struct{}{}
	}
	v.baseSymbols = len(g.Symbols())
	v.globalProto = g.Prototype()
	if count := ownKeyCounter(g); count != nil && count() == len(v.baseline) {
		v.globalNames = count
	}
	return v, nil
}

// bindHost defines the host API's globals: the functions, log and
// console, and the accessors of $vars, env and secrets.
func bindHost(v *vm) error {
	rt, g := v.rt, v.rt.GlobalObject()
	fns := map[string]func(goja.FunctionCall) goja.Value{
		"RunOperation": v.jsRunOperation,
		"Acknowledge":  v.jsAcknowledge,
		"SendMessage":  v.jsSendMessage,
		"Get":          v.jsGet,
		"RaiseError":   v.jsRaiseError,
		"GetLastError": v.jsGetLastError,
		"setTimeout":   v.jsSetTimeout,
		"clearTimeout": v.jsClearTimeout,
		"sleep":        v.jsSleep,
	}
	for name, fn := range fns {
		if err := g.Set(name, fn); err != nil {
			return fmt.Errorf("bind %s: %w", name, err)
		}
	}
	logObj, consoleObj := rt.NewObject(), rt.NewObject()
	for _, lvl := range []string{"info", "warn", "error", "debug"} {
		fn := v.logger(lvl)
		_ = logObj.Set(lvl, fn)
		_ = consoleObj.Set(lvl, fn)
	}
	_ = consoleObj.Set("log", v.logger("info"))
	_ = g.Set("log", logObj)
	_ = g.Set("console", consoleObj)
	for name, get := range map[string]func(goja.FunctionCall) goja.Value{"$vars": v.jsVars, "env": v.jsEnv, "secrets": v.jsSecrets} {
		if err := g.DefineAccessorProperty(name, rt.ToValue(get), nil, goja.FLAG_FALSE, goja.FLAG_FALSE); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// installJSONParse replaces json.parse by v.jsonParse, with the built-in's
// name, length and attributes. v.parse keeps the built-in.
func installJSONParse(v *vm, json *goja.Object) error {
	fn, ok := v.rt.ToValue(v.jsonParse).(*goja.Object)
	if !ok {
		return fmt.Errorf("JSON.parse: not a function object")
	}
	for _, err := range []error{
		fn.DefineDataProperty("name", v.rt.ToValue("parse"), goja.FLAG_FALSE, goja.FLAG_TRUE, goja.FLAG_FALSE),
		fn.DefineDataProperty("length", v.rt.ToValue(2), goja.FLAG_FALSE, goja.FLAG_TRUE, goja.FLAG_FALSE),
		json.DefineDataProperty("parse", fn, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_FALSE),
	} {
		if err != nil {
			return fmt.Errorf("JSON.parse: %w", err)
		}
	}
	return nil
}

// reset removes what a chain left on the global object. It reports false
// when the runtime cannot be cleaned and must be discarded.
func (v *vm) reset() bool {
	v.rt.ClearInterrupt()
	g := v.rt.GlobalObject()
	if g.Prototype() != v.globalProto || len(g.Symbols()) != v.baseSymbols {
		return false
	}
	if v.globalNames != nil && v.globalNames() == len(v.baseline) {
		return true // the usual case: the chain added no global
	}
	names := g.GetOwnPropertyNames()
	if len(names) == len(v.baseline) {
		return true // baseline properties are non-configurable: same set
	}
	for _, n := range names {
		if _, ok := v.baseline[n]; ok {
			continue
		}
		if err := g.Delete(n); err != nil {
			return false
		}
	}
	return len(g.GetOwnPropertyNames()) == len(v.baseline)
}

// ownKeyCounter returns a function reporting the number of own string keys
// of o, read from goja's property-name list instead of listing them (which
// allocates a string per key: the end-of-chain check was ~30% of an
// invocation). It reads an unexported field through reflect (read-only) and
// returns nil when goja's layout is not the expected one; callers must then
// list the keys, and newVM also checks the count against a listing once.
func ownKeyCounter(o *goja.Object) func() int {
	self := reflect.ValueOf(o).Elem().FieldByName("self")
	if !self.IsValid() || self.Kind() != reflect.Interface || self.IsNil() {
		return nil
	}
	impl := self.Elem()
	if impl.Kind() != reflect.Pointer || impl.Elem().Kind() != reflect.Struct {
		return nil
	}
	names := impl.Elem().FieldByName("propNames")
	if !names.IsValid() || names.Kind() != reflect.Slice {
		return nil
	}
	return names.Len
}

// throw raises a JS Error with msg in the running script; the Error carries
// the JS stack of the call site. It never returns.
func (v *vm) throw(format string, args ...any) {
	obj, err := v.rt.New(v.errorCtor, v.rt.ToValue(fmt.Sprintf(format, args...)))
	if err != nil {
		panic(v.rt.NewGoError(err))
	}
	panic(obj)
}

// throwType throws a TypeError with the formatted message.
func (v *vm) throwType(format string, args ...any) {
	panic(v.rt.NewTypeError(fmt.Sprintf(format, args...)))
}

// throwRange throws a RangeError with the formatted message.
func (v *vm) throwRange(format string, args ...any) {
	v.throwWith(v.rangeError, format, args...)
}

// throwWith throws a new ctor(message).
func (v *vm) throwWith(ctor goja.Value, format string, args ...any) {
	obj, err := v.rt.New(ctor, v.rt.ToValue(fmt.Sprintf(format, args...)))
	if err != nil {
		panic(v.rt.NewGoError(err))
	}
	panic(obj)
}

// safeString converts a JS value to a string without letting a throwing
// toString escape.
func (v *vm) safeString(val goja.Value) (s string) {
	if val == nil {
		return "undefined"
	}
	defer func() {
		if recover() != nil {
			s = "[object]"
		}
	}()
	return val.String()
}

// isUserFrame reports whether a stack frame belongs to a user's script.
func isUserFrame(f goja.StackFrame) bool {
	name := f.SrcName()
	return name != "<native>" && name != "" && !strings.HasPrefix(name, internalPrefix)
}
