package runtime

import (
	"encoding/json"
	"maps"
	"slices"

	"github.com/dop251/goja"
)

// Lazy event fields. A top-level event value that takes building (a JSON
// body as json.RawMessage, a map, or a func() any computing the value)
// becomes an accessor property that builds it on first read and then
// replaces itself with an ordinary data property. A script that reads only
// event.rawBody, or nothing, does not pay for building the body's objects
// (on a small webhook that was a tenth of the request's CPU; a message's
// properties and headers were as much again).
//
// The getter and setter of a key are built once per runtime and shared by
// every run; the pending bodies live on the run, so they die with it.

// lazyField is a top-level event property whose value is not built yet
// (val nil), or whose value could not be made a data property (the object
// was frozen or sealed first): then the getter keeps answering val.
type lazyField struct {
	obj  *goja.Object
	key  string
	data any // what toJS builds the value from
	// from, when set, holds the field this one mirrors (ctx.message's copy
	// of an event field): its value is read from there.
	from *goja.Object
	val  goja.Value
	// settled: the field is an ordinary data property now. Fields are never
	// removed from run.lazy (a getter may run inside another's), only
	// settled.
	settled bool
}

// accessorPair is the shared getter and setter of one lazy key.
type accessorPair struct{ get, set goja.Value }

// maxLazyKeys bounds vm.lazyKeys; values of other keys are built at once.
const maxLazyKeys = 8

// eventToJS is toJS for an event: top-level values that take building
// (see deferrable) are built when first read.
func (r *run) eventToJS(x any) goja.Value {
	m, ok := x.(map[string]any)
	if !ok {
		return r.v.toJS(x)
	}
	v := r.v
	o := v.rt.NewObject()
	for _, k := range v.eventKeys(m) { // as toJS: the same order every run
		e := m[k]
		if deferrable(e) {
			if acc, ok := v.lazyAccessors(k); ok && o.DefineAccessorProperty(k, acc.get, acc.set, goja.FLAG_TRUE, goja.FLAG_TRUE) == nil {
				r.lazy = append(r.lazy, lazyField{obj: o, key: k, data: e})
				continue
			}
		}
		_ = v.createDataProperty(o, k, v.toJS(e))
	}
	return o
}

// eventKeys returns m's keys sorted. Events of one trigger have the same
// keys run after run: the last answer is kept and reused when it fits.
func (v *vm) eventKeys(m map[string]any) []string {
	if len(v.lastEventKeys) == len(m) {
		fits := true
		for _, k := range v.lastEventKeys {
			if _, ok := m[k]; !ok {
				fits = false
				break
			}
		}
		if fits {
			return v.lastEventKeys
		}
	}
	v.lastEventKeys = slices.Sorted(maps.Keys(m))
	return v.lastEventKeys
}

// deferrable reports whether building x is worth deferring.
func deferrable(x any) bool {
	switch x := x.(type) {
	case json.RawMessage:
		return len(x) > 0
	case func() any:
		return x != nil
	case map[string]any:
		return len(x) > 0
	case map[string]string:
		return len(x) > 0
	}
	return false
}

// lazyAccessors returns the getter and setter for key, building them on
// first use; false when the runtime already has maxLazyKeys of them.
func (v *vm) lazyAccessors(key string) (accessorPair, bool) {
	if acc, ok := v.lazyKeys[key]; ok {
		return acc, true
	}
	if len(v.lazyKeys) >= maxLazyKeys {
		return accessorPair{}, false
	}
	acc := accessorPair{
		get: v.rt.ToValue(func(call goja.FunctionCall) goja.Value { return v.lazyGet(call.This, key) }),
		set: v.rt.ToValue(func(call goja.FunctionCall) goja.Value {
			v.lazySet(call.This, key, call.Argument(0))
			return goja.Undefined()
		}),
	}
	// Frozen: a script can reach them through a property descriptor and
	// must not leave state on them for later runs.
	for _, fn := range []goja.Value{acc.get, acc.set} {
		if _, err := v.freeze(goja.Undefined(), fn); err != nil {
			return accessorPair{}, false
		}
	}
	if v.lazyKeys == nil {
		v.lazyKeys = make(map[string]accessorPair)
	}
	v.lazyKeys[key] = acc
	return acc, true
}

// lazyGet builds key's value on the object that holds the pending field
// (this or one of its prototypes) and makes it a data property there.
func (v *vm) lazyGet(this goja.Value, key string) goja.Value {
	if f := v.lazyField(this, key, true); f != nil {
		if f.val == nil {
			if f.from != nil {
				f.val = f.from.Get(f.key)
			} else {
				f.val = v.toJS(f.data)
			}
		}
		val := f.val
		v.settleLazy(f, val)
		return val
	}
	return goja.Undefined()
}

// lazySet is assignment to a pending field: the value replaces it unread.
func (v *vm) lazySet(this goja.Value, key string, val goja.Value) {
	if f := v.lazyField(this, key, false); f != nil {
		f.val = val
		v.settleLazy(f, val)
	}
}

// lazyField finds the pending field key of this (or, when inherited, of
// one of its prototypes).
func (v *vm) lazyField(this goja.Value, key string, inherited bool) *lazyField {
	r := v.cur
	obj, _ := this.(*goja.Object)
	if r == nil || obj == nil {
		return nil
	}
	for o := obj; o != nil; o = o.Prototype() {
		for i := range r.lazy {
			if f := &r.lazy[i]; f.obj == o && f.key == key && !f.settled {
				return f
			}
		}
		if !inherited {
			break
		}
	}
	return nil
}

// settleLazy makes f a data property holding val; f stays pending (with
// val) when its object no longer allows that.
func (v *vm) settleLazy(f *lazyField, val goja.Value) {
	if f.obj.DefineDataProperty(f.key, val, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_TRUE) == nil {
		f.settled = true
	}
}

// copyEventField copies event's property key onto dst, keeping it pending
// when it is.
func (r *run) copyEventField(dst, event *goja.Object, key string) {
	for _, f := range r.lazy {
		if f.obj != event || f.key != key || f.settled || f.val != nil {
			continue
		}
		acc, ok := r.v.lazyKeys[key]
		if ok && dst.DefineAccessorProperty(key, acc.get, acc.set, goja.FLAG_TRUE, goja.FLAG_TRUE) == nil {
			r.lazy = append(r.lazy, lazyField{obj: dst, key: key, from: event})
			return
		}
		break
	}
	_ = dst.Set(key, event.Get(key))
}
