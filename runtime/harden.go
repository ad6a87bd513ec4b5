package runtime

import (
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/dop251/goja"
)

// Hardening is the last step of building a runtime: the built-in Set
// constructor becomes also the host's Set(name, value); every intrinsic
// reachable from the global object (and the hidden iterator, generator and
// async prototypes) is frozen, so that a chain cannot change what the next
// chain sees; properties that scripts commonly shadow on their own objects
// (constructor, toString, name, message, ...) become accessors whose setter
// defines an own property on the receiver, which avoids the "override
// mistake" of frozen prototypes; each global binding present then becomes
// non-writable and non-configurable. The global object itself stays
// extensible: reset removes what a chain adds.
//
// Finding what to freeze takes a property descriptor per property of every
// intrinsic, most of a runtime's build. Every runtime of an engine is built
// the same way, so the first one walks with descriptors and records a plan
// (per object visited: which properties hold objects, which are accessors,
// which to make overridable); later runtimes follow the plan, reading data
// properties directly and taking descriptors only of accessors.

// overridable are the properties of frozen prototypes that objects may
// still assign to themselves (see above).
var overridable = []string{"constructor", "toString", "toLocaleString", "valueOf", "hasOwnProperty",
	"isPrototypeOf", "propertyIsEnumerable", "name", "message"}

// setSrc replaces the global Set by a function that constructs a native Set
// under new and calls the host's setVar otherwise; hiddenSrc lists the
// objects whose prototype chains are intrinsics not reachable from a global.
const (
	setSrc = `(function(setVar) {
'use strict';
const NativeSet = globalThis.Set, construct = Reflect.construct;
function Set(name, value) {
	if (new.target) return construct(NativeSet, arguments, new.target);
	return setVar(name, value);
}
Set.prototype = NativeSet.prototype;
Object.defineProperty(globalThis, 'Set', {value: Set, writable: true, enumerable: false, configurable: true});
})`
	hiddenSrc = `[[][Symbol.iterator](), new Map().entries(), new Set().values(), ''[Symbol.iterator](),
	/x/[Symbol.matchAll](''), (function*(){})(), (function*(){}), (async function(){})]`
)

var (
	setProgram    = goja.MustCompile(internalPrefix+"harden-set", setSrc, true)
	hiddenProgram = goja.MustCompile(internalPrefix+"harden-hidden", hiddenSrc, true)
)

// errPlanMismatch: a runtime differs from the one its engine's plan was
// recorded on. Runtimes are built deterministically, so it is a bug.
var errPlanMismatch = errors.New("harden: runtime differs from the recorded plan")

// hardenPlan is the recorded walk: objects in the order the walk takes
// them off its stack, and the global bindings it fixes.
type hardenPlan struct {
	roots   []planProp // the global object's properties holding objects
	objects []planObject
	globals []planProp // the global bindings made fixed
}

// planObject is what the walk does with one object: make overrides
// overridable, then visit the values of children (and its prototype).
type planObject struct {
	overrides []planProp
	children  []planProp
}

// planProp is a property: by name, or by its index among the object's own
// symbols (symbol keys of intrinsics are goja's well-known symbols, shared
// by runtimes, but the index does not depend on that).
type planProp struct {
	name       string
	symbol     int // index in Symbols(); -1 for a string key
	accessor   bool
	enumerable bool
	isProtoKey bool // the key is "prototype": its value is visited as a prototype
}

// hardenPlans keeps each engine's plan; the first runtime records it.
type hardenPlans struct {
	mu   sync.Mutex
	plan *hardenPlan
}

func (p *hardenPlans) get() *hardenPlan {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.plan
}

func (p *hardenPlans) offer(plan *hardenPlan) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.plan == nil {
		p.plan = plan
	}
}

// harden hardens v's runtime (see above), recording the engine's plan or
// following it.
func harden(v *vm) error {
	setFn, err := v.rt.RunProgram(setProgram)
	if err != nil {
		return fmt.Errorf("harden: %w", err)
	}
	call, _ := goja.AssertFunction(setFn)
	if _, err := call(goja.Undefined(), v.rt.ToValue(v.jsSet)); err != nil {
		return fmt.Errorf("harden: %w", err)
	}
	w, err := newWalker(v)
	if err != nil {
		return err
	}
	if plan := v.e.plans.get(); plan != nil {
		w.plan = plan
		return w.run()
	}
	w.record = &hardenPlan{}
	if err := w.run(); err != nil {
		return err
	}
	v.e.plans.offer(w.record)
	return nil
}

// walker is one hardening walk: it records a plan (record set) or follows
// one (plan set).
type walker struct {
	v       *vm
	getDesc goja.Callable
	getSyms goja.Callable // Object.getOwnPropertySymbols
	hasOwn  goja.Callable
	seen    map[*goja.Object]struct{}
	stack   []*goja.Object
	isProto []bool

	record *hardenPlan
	plan   *hardenPlan
	next   int // the plan's next object
}

func newWalker(v *vm) (*walker, error) {
	object := v.rt.GlobalObject().Get("Object").(*goja.Object)
	getDesc, ok1 := goja.AssertFunction(object.Get("getOwnPropertyDescriptor"))
	getSyms, ok2 := goja.AssertFunction(object.Get("getOwnPropertySymbols"))
	hasOwn, ok3 := goja.AssertFunction(object.Get("prototype").(*goja.Object).Get("hasOwnProperty"))
	if !ok1 || !ok2 || !ok3 {
		return nil, errors.New("harden: Object built-ins missing")
	}
	return &walker{v: v, getDesc: getDesc, getSyms: getSyms, hasOwn: hasOwn, seen: map[*goja.Object]struct{}{}}, nil
}

// run freezes what the global object and the hidden roots reach, then
// fixes the global bindings.
func (w *walker) run() (err error) {
	defer func() {
		if x := recover(); x != nil {
			err = fmt.Errorf("harden: %v", x)
		}
	}()
	g := w.v.rt.GlobalObject()
	w.seen[g] = struct{}{}
	if w.plan == nil {
		w.record.roots = w.ownProps(g)
	}
	roots := w.record
	if w.plan != nil {
		roots = w.plan
	}
	for _, p := range roots.roots {
		if err := w.visitProp(g, p); err != nil {
			return err
		}
	}
	hidden, err := w.v.rt.RunProgram(hiddenProgram)
	if err != nil {
		return fmt.Errorf("harden: %w", err)
	}
	list := hidden.(*goja.Object)
	for i := 0; ; i++ {
		root, ok := list.Get(fmt.Sprint(i)).(*goja.Object)
		if !ok {
			break
		}
		for p := root.Prototype(); p != nil; p = p.Prototype() {
			w.visit(p, true)
		}
	}
	for len(w.stack) > 0 {
		if err := w.step(); err != nil {
			return err
		}
	}
	if w.plan != nil && w.next != len(w.plan.objects) {
		return errPlanMismatch
	}
	return w.fixGlobals(g)
}

// step takes the next object off the stack: overrides, children, freeze.
func (w *walker) step() error {
	n := len(w.stack) - 1
	obj, isProto := w.stack[n], w.isProto[n]
	w.stack, w.isProto = w.stack[:n], w.isProto[:n]
	var po planObject
	if w.plan != nil {
		if w.next >= len(w.plan.objects) {
			return errPlanMismatch
		}
		po = w.plan.objects[w.next]
		w.next++
		for _, p := range po.overrides {
			w.override(obj, p, obj.Get(p.name))
		}
	} else {
		if isProto {
			po.overrides = w.recordOverrides(obj)
		}
		po.children = w.ownProps(obj)
		w.record.objects = append(w.record.objects, po)
	}
	w.visit(obj.Prototype(), true)
	for _, p := range po.children {
		if err := w.visitProp(obj, p); err != nil {
			return err
		}
	}
	_, err := w.v.freeze(goja.Undefined(), obj)
	return err
}

// recordOverrides makes obj's overridable data properties accessors and
// returns them.
func (w *walker) recordOverrides(obj *goja.Object) []planProp {
	var props []planProp
	for _, name := range overridable {
		d := w.descriptor(obj, w.v.rt.ToValue(name))
		if d == nil || !d.Get("configurable").ToBoolean() || !w.has(d, "value") {
			continue
		}
		p := planProp{name: name, symbol: -1, enumerable: d.Get("enumerable").ToBoolean()}
		w.override(obj, p, d.Get("value"))
		props = append(props, p)
	}
	return props
}

// override turns obj[name] (value) into an accessor: reading gives value;
// assigning on obj itself throws; assigning on an object inheriting from
// obj sets that object's own property.
func (w *walker) override(obj *goja.Object, p planProp, value goja.Value) {
	rt, name := w.v.rt, p.name
	get := func(goja.FunctionCall) goja.Value { return value }
	set := func(call goja.FunctionCall) goja.Value {
		this, ok := call.This.(*goja.Object)
		if call.This.SameAs(obj) {
			panic(rt.NewTypeError("Cannot assign to read only property '%s' of a built-in object", name))
		}
		if !ok {
			panic(rt.NewTypeError("Cannot create property '%s' on a primitive value", name))
		}
		if own, err := w.hasOwn(this, rt.ToValue(name)); err == nil && own.ToBoolean() {
			if err := this.Set(name, call.Argument(0)); err != nil {
				panic(err)
			}
			return goja.Undefined()
		}
		if err := this.DefineDataProperty(name, call.Argument(0), goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_TRUE); err != nil {
			panic(err)
		}
		return goja.Undefined()
	}
	if err := obj.DefineAccessorProperty(name, rt.ToValue(get), rt.ToValue(set), goja.FLAG_FALSE, flag(p.enumerable)); err != nil {
		panic(err)
	}
}

// visit puts val on the stack unless it is a primitive or seen before.
func (w *walker) visit(val goja.Value, isProto bool) {
	obj, ok := val.(*goja.Object)
	if !ok || obj == nil {
		return
	}
	if _, seen := w.seen[obj]; seen {
		return
	}
	w.seen[obj] = struct{}{}
	w.stack = append(w.stack, obj)
	w.isProto = append(w.isProto, isProto)
}

// visitProp visits what obj's property p holds: the value of a data
// property, or the getter and setter of an accessor.
func (w *walker) visitProp(obj *goja.Object, p planProp) error {
	key, err := w.key(obj, p)
	if err != nil {
		return err
	}
	if !p.accessor {
		var val goja.Value
		if sym, ok := key.(*goja.Symbol); ok {
			val = obj.GetSymbol(sym)
		} else {
			val = obj.Get(p.name)
		}
		if _, ok := val.(*goja.Object); !ok {
			return errPlanMismatch
		}
		w.visit(val, p.isProtoKey)
		return nil
	}
	d := w.descriptor(obj, key)
	if d == nil || w.has(d, "value") {
		return errPlanMismatch
	}
	w.visit(d.Get("get"), false)
	w.visit(d.Get("set"), false)
	return nil
}

// ownProps lists obj's properties that hold objects (recording).
func (w *walker) ownProps(obj *goja.Object) []planProp {
	var props []planProp
	w.eachOwn(obj, func(p planProp, d *goja.Object) {
		if p.accessor {
			props = append(props, p)
			return
		}
		if _, ok := d.Get("value").(*goja.Object); ok {
			props = append(props, p)
		}
	})
	return props
}

// eachOwn calls f with each own property of obj and its descriptor.
func (w *walker) eachOwn(obj *goja.Object, f func(planProp, *goja.Object)) {
	names := obj.GetOwnPropertyNames()
	for _, name := range names {
		w.withDescriptor(obj, planProp{name: name, symbol: -1, isProtoKey: name == "prototype"}, w.v.rt.ToValue(name), f)
	}
	for i, sym := range w.symbols(obj) {
		w.withDescriptor(obj, planProp{symbol: i}, sym, f)
	}
}

func (w *walker) withDescriptor(obj *goja.Object, p planProp, key goja.Value, f func(planProp, *goja.Object)) {
	d := w.descriptor(obj, key)
	if d == nil {
		return
	}
	p.accessor = !w.has(d, "value")
	p.enumerable = d.Get("enumerable").ToBoolean()
	f(p, d)
}

// fixGlobals makes the global object's configurable bindings fixed
// (non-configurable, and non-writable for data properties).
func (w *walker) fixGlobals(g *goja.Object) error {
	if w.plan == nil {
		w.eachOwn(g, func(p planProp, d *goja.Object) {
			if d.Get("configurable").ToBoolean() {
				w.record.globals = append(w.record.globals, p)
			}
		})
	}
	globals := w.plan
	if globals == nil {
		globals = w.record
	}
	for _, p := range globals.globals {
		if err := w.fixGlobal(g, p); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) fixGlobal(g *goja.Object, p planProp) error {
	key, err := w.key(g, p)
	if err != nil {
		return err
	}
	var getter, setter goja.Value
	if p.accessor {
		d := w.descriptor(g, key)
		if d == nil {
			return errPlanMismatch
		}
		getter, setter = d.Get("get"), d.Get("set")
	}
	switch sym, isSym := key.(*goja.Symbol); {
	case isSym && p.accessor:
		return g.DefineAccessorPropertySymbol(sym, getter, setter, goja.FLAG_FALSE, flag(p.enumerable))
	case isSym:
		return g.DefineDataPropertySymbol(sym, g.GetSymbol(sym), goja.FLAG_FALSE, goja.FLAG_FALSE, flag(p.enumerable))
	case p.accessor:
		return g.DefineAccessorProperty(p.name, getter, setter, goja.FLAG_FALSE, flag(p.enumerable))
	default:
		return g.DefineDataProperty(p.name, g.Get(p.name), goja.FLAG_FALSE, goja.FLAG_FALSE, flag(p.enumerable))
	}
}

// key is p's key on obj: its name, or its symbol.
func (w *walker) key(obj *goja.Object, p planProp) (goja.Value, error) {
	if p.symbol < 0 {
		return w.v.rt.ToValue(p.name), nil
	}
	syms := w.symbols(obj)
	if p.symbol >= len(syms) {
		return nil, errPlanMismatch
	}
	return syms[p.symbol], nil
}

// symbols are obj's own symbol keys, enumerable or not (goja's Symbols
// lists only the enumerable ones).
func (w *walker) symbols(obj *goja.Object) []*goja.Symbol {
	list, err := w.getSyms(goja.Undefined(), obj)
	if err != nil {
		panic(err)
	}
	arr := list.(*goja.Object)
	n := int(arr.Get("length").ToInteger())
	syms := make([]*goja.Symbol, 0, n)
	for i := 0; i < n; i++ {
		if sym, ok := arr.Get(strconv.Itoa(i)).(*goja.Symbol); ok {
			syms = append(syms, sym)
		}
	}
	return syms
}

// descriptor is Object.getOwnPropertyDescriptor(obj, key); nil when obj
// has no such property.
func (w *walker) descriptor(obj *goja.Object, key goja.Value) *goja.Object {
	d, err := w.getDesc(goja.Undefined(), obj, key)
	if err != nil {
		panic(err)
	}
	o, _ := d.(*goja.Object)
	return o
}

// has reports whether o has an own property name.
func (w *walker) has(o *goja.Object, name string) bool {
	own, err := w.hasOwn(o, w.v.rt.ToValue(name))
	return err == nil && own.ToBoolean()
}

func flag(b bool) goja.Flag {
	if b {
		return goja.FLAG_TRUE
	}
	return goja.FLAG_FALSE
}
