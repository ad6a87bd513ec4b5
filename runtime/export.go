package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"

	"github.com/dop251/goja"
)

// Exporting a script's result as plain Go data. JSON.stringify followed by
// json.Unmarshal was ~15% of a webhook invocation; exporter walks ordinary
// objects and arrays directly, following the steps of JSON.stringify's
// SerializeJSONProperty (toJSON, getters and Proxy traps run once, in the
// same order), and hands anything else (Dates, boxed primitives, Proxies,
// Maps, Errors, host objects, very deep values) to JSON.stringify itself.

// exportDepth bounds how deep exporter recurses before delegating.
const exportDepth = 64

var (
	mapType   = reflect.TypeFor[map[string]any]()
	sliceType = reflect.TypeFor[[]any]()
)

// errSkip marks a value JSON.stringify omits (undefined, functions, symbols).
var errSkip = errors.New("skip")

// exporter is one export; stack holds the objects being serialised (for
// cycle detection, as JSON.stringify's stack).
type exporter struct {
	v     *vm
	stack []*goja.Object
}

// exportJSON converts a JS value to plain JSON-able Go data, as
// JSON.stringify sees it (functions and undefined dropped, toJSON applied;
// cycles and BigInts are errors).
func (v *vm) exportJSON(val goja.Value) (any, error) {
	ex := exporter{v: v}
	out, err := ex.property("", val, false)
	if errors.Is(err, errSkip) {
		return nil, nil
	}
	return out, err
}

// property serialises val found under key (SerializeJSONProperty without a
// replacer). afterToJSON says val is what a toJSON returned: it is not
// asked for toJSON again.
func (ex *exporter) property(key string, val goja.Value, afterToJSON bool) (any, error) {
	if val == nil || goja.IsUndefined(val) {
		return nil, errSkip
	}
	if _, ok := val.(*goja.Symbol); ok {
		return nil, errSkip
	}
	obj, isObj := val.(*goja.Object)
	if !isObj {
		switch x := val.Export().(type) {
		case nil:
			return nil, nil
		case int64:
			return float64(x), nil
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return nil, nil
			}
			if x == 0 {
				return 0.0, nil // -0 serialises as 0
			}
			return x, nil
		case string, bool:
			return x, nil
		case *big.Int:
			return nil, notSerialisable("TypeError: Do not know how to serialize a BigInt")
		default:
			return ex.delegate(key, val)
		}
	}
	plainObject := obj.ExportType() == mapType && obj.ClassName() == "Object"
	array := !plainObject && obj.ExportType() == sliceType && obj.ClassName() == "Array"
	if (!plainObject && !array) || len(ex.stack) >= exportDepth {
		if _, ok := goja.AssertFunction(obj); ok && afterToJSON {
			return nil, errSkip
		}
		return ex.delegate(key, obj) // applies toJSON again when afterToJSON
	}
	if !afterToJSON {
		var toJSON goja.Value
		if err := ex.try(func() { toJSON = obj.Get("toJSON") }); err != nil {
			return nil, err
		}
		if fn, ok := goja.AssertFunction(toJSON); ok {
			ret, err := fn(obj, ex.v.rt.ToValue(key))
			if err != nil {
				return nil, notSerialisable(err.Error())
			}
			return ex.property(key, ret, true)
		}
	}
	for _, o := range ex.stack {
		if o == obj {
			return nil, notSerialisable("TypeError: Converting circular structure to JSON")
		}
	}
	ex.stack = append(ex.stack, obj)
	defer func() { ex.stack = ex.stack[:len(ex.stack)-1] }()
	if array {
		return ex.array(obj)
	}
	return ex.object(obj)
}

func (ex *exporter) object(obj *goja.Object) (any, error) {
	var keys []string
	if err := ex.try(func() { keys = obj.Keys() }); err != nil {
		return nil, err
	}
	out := make(map[string]any, len(keys))
	for _, k := range keys {
		var val goja.Value
		if err := ex.try(func() { val = obj.Get(k) }); err != nil {
			return nil, err
		}
		x, err := ex.property(k, val, false)
		if errors.Is(err, errSkip) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[k] = x
	}
	return out, nil
}

func (ex *exporter) array(obj *goja.Object) (any, error) {
	var n int64
	if err := ex.try(func() { n = obj.Get("length").ToInteger() }); err != nil {
		return nil, err
	}
	out := make([]any, 0, max(0, min(n, 1<<16)))
	for i := int64(0); i < n; i++ {
		k := strconv.FormatInt(i, 10)
		var val goja.Value
		if err := ex.try(func() { val = obj.Get(k) }); err != nil {
			return nil, err
		}
		x, err := ex.property(k, val, false)
		if errors.Is(err, errSkip) {
			x, err = nil, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, nil
}

// delegate serialises obj (an object, or a primitive of an unknown kind),
// found under key, with JSON.stringify itself: it
// stringifies {[key]: obj} so that a toJSON sees the same key.
func (ex *exporter) delegate(key string, obj goja.Value) (any, error) {
	rt := ex.v.rt
	holder := rt.NewObject()
	if err := holder.DefineDataProperty(key, obj, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_TRUE); err != nil {
		return nil, notSerialisable(err.Error())
	}
	s, err := ex.v.stringify(goja.Undefined(), holder)
	if err != nil {
		return nil, notSerialisable(err.Error())
	}
	var out map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s.String()), &out); err != nil {
		return nil, fmt.Errorf("value is not JSON-serialisable: %w", err)
	}
	raw, ok := out[key]
	if !ok {
		return nil, errSkip
	}
	var x any
	if err := json.Unmarshal(raw, &x); err != nil {
		return nil, fmt.Errorf("value is not JSON-serialisable: %w", err)
	}
	return x, nil
}

// try runs f, turning a JS exception it throws (a getter, a Proxy trap)
// or an interrupt (the memory watchdog) into an export error, as calling
// JSON.stringify would.
func (ex *exporter) try(f func()) (err error) {
	defer func() {
		if x := recover(); x != nil {
			ie, ok := x.(*goja.InterruptedError)
			if !ok {
				panic(x)
			}
			err = notSerialisable(ie.Error())
		}
	}()
	if exc := ex.v.rt.Try(f); exc != nil {
		return notSerialisable(exc.Error())
	}
	return nil
}

func notSerialisable(msg string) error {
	return fmt.Errorf("value is not JSON-serialisable: %s", firstLine(msg))
}
