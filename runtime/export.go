package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/dop251/goja"
)

// Encoding a script's result as JSON. Exporting it to Go data and then
// json.Marshal-ing that was ~10% of a webhook invocation; encoder writes
// the JSON straight from the JS value instead. It follows the steps of
// JSON.stringify's SerializeJSONProperty (toJSON, getters and Proxy traps
// run once, in the same order) over ordinary objects and arrays and hands
// anything else (Dates, boxed primitives, Proxies, Maps, Errors, host
// objects, very deep values) to JSON.stringify itself. The bytes are those
// json.Marshal writes for the Go data JSON.stringify's output decodes to:
// object keys sorted bytewise, <, > and & escaped, numbers as json.Marshal
// formats a float64. Two known differences from JSON.stringify, kept from
// the exporter encoder replaced: a delegated object that a toJSON returned
// is asked for its toJSON again (a Date from toJSON becomes its ISO string,
// not {}), and a key with a lone surrogate is read back as U+FFFD, which
// finds no property (the member is dropped).

// exportDepth bounds how deep encoder recurses before delegating.
const exportDepth = 64

var (
	mapType    = reflect.TypeFor[map[string]any]()
	sliceType  = reflect.TypeFor[[]any]()
	int64Type  = reflect.TypeFor[int64]()
	floatType  = reflect.TypeFor[float64]()
	stringType = reflect.TypeFor[string]()
	boolType   = reflect.TypeFor[bool]()
	bigIntType = reflect.TypeFor[*big.Int]()
)

// errSkip marks a value JSON.stringify omits (undefined, functions, symbols).
var errSkip = errors.New("skip")

// encoder is one encoding into buf. stack holds the objects being
// serialised (for cycle detection, as JSON.stringify's stack); members is a
// stack of the members written for the objects being serialised (see
// object).
type encoder struct {
	v       *vm
	buf     []byte
	stack   []*goja.Object
	members []member
}

// member is one member of an object being written: the bytes
// `,"key":value` at buf[start:end].
type member struct {
	key        string
	start, end int
}

// encodeJSON returns the JSON of a JS value as JSON.stringify sees it
// (functions and undefined dropped, toJSON applied; cycles and BigInts are
// errors), written as json.Marshal writes that JSON's Go data. It returns
// nil, nil when JSON.stringify would return undefined.
func (v *vm) encodeJSON(val goja.Value) ([]byte, error) {
	e := encoder{v: v, buf: make([]byte, 0, 128), stack: make([]*goja.Object, 0, 8)}
	err := e.property("", val, false)
	if errors.Is(err, errSkip) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return e.buf, nil
}

// exportJSON converts a JS value to plain JSON-able Go data
// (map[string]any, []any, string, float64, bool, nil), as JSON.stringify
// sees it; see encodeJSON.
func (v *vm) exportJSON(val goja.Value) (any, error) {
	b, err := v.encodeJSON(val)
	if err != nil || b == nil {
		return nil, err
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("value is not JSON-serialisable: %w", err)
	}
	return out, nil
}

// property writes val found under key (SerializeJSONProperty without a
// replacer). afterToJSON says val is what a toJSON returned: it is not
// asked for toJSON again. On errSkip it has written nothing.
func (e *encoder) property(key string, val goja.Value, afterToJSON bool) error {
	if val == nil || goja.IsUndefined(val) {
		return errSkip
	}
	if _, ok := val.(*goja.Symbol); ok {
		return errSkip
	}
	obj, isObj := val.(*goja.Object)
	if !isObj {
		return e.primitive(key, val)
	}
	plainObject := obj.ExportType() == mapType && obj.ClassName() == "Object"
	array := !plainObject && obj.ExportType() == sliceType && obj.ClassName() == "Array"
	if (!plainObject && !array) || len(e.stack) >= exportDepth {
		if _, ok := goja.AssertFunction(obj); ok && afterToJSON {
			return errSkip
		}
		return e.delegate(key, obj) // applies toJSON again when afterToJSON
	}
	if !afterToJSON {
		var toJSON goja.Value
		if err := e.try(func() { toJSON = obj.Get("toJSON") }); err != nil {
			return err
		}
		if fn, ok := goja.AssertFunction(toJSON); ok {
			ret, err := fn(obj, e.v.rt.ToValue(key))
			if err != nil {
				return notSerialisable(err.Error())
			}
			return e.property(key, ret, true)
		}
	}
	for _, o := range e.stack {
		if o == obj {
			return notSerialisable("TypeError: Converting circular structure to JSON")
		}
	}
	e.stack = append(e.stack, obj)
	defer func() { e.stack = e.stack[:len(e.stack)-1] }()
	if array {
		return e.array(obj)
	}
	return e.object(obj)
}

// primitive writes a value that is not an object.
func (e *encoder) primitive(key string, val goja.Value) error {
	switch val.ExportType() {
	case nil: // null
		e.buf = append(e.buf, "null"...)
	case boolType:
		e.buf = strconv.AppendBool(e.buf, val.ToBoolean())
	case stringType:
		e.buf = appendString(e.buf, val.String())
	case int64Type:
		e.buf = appendNumber(e.buf, float64(val.ToInteger()))
	case floatType:
		e.buf = appendNumber(e.buf, val.ToFloat())
	case bigIntType:
		return notSerialisable("TypeError: Do not know how to serialize a BigInt")
	default:
		return e.delegate(key, val)
	}
	return nil
}

// object writes a plain object. Members are written in the order of
// obj.Keys() (so getters run in JSON.stringify's order), each as
// `,"key":value`, then reordered by key as json.Marshal orders a map's;
// finally the first member's comma becomes the opening brace.
func (e *encoder) object(obj *goja.Object) error {
	var keys []string
	if err := e.try(func() { keys = obj.Keys() }); err != nil {
		return err
	}
	open, base := len(e.buf), len(e.members)
	e.members = slices.Grow(e.members, len(keys))
	for _, k := range keys {
		var val goja.Value
		if err := e.try(func() { val = obj.Get(k) }); err != nil {
			return err
		}
		start := len(e.buf)
		e.buf = append(e.buf, ',')
		e.buf = appendString(e.buf, k)
		e.buf = append(e.buf, ':')
		err := e.property(k, val, false)
		if errors.Is(err, errSkip) {
			e.buf = e.buf[:start]
			continue
		}
		if err != nil {
			return err
		}
		e.members = append(e.members, member{key: k, start: start, end: len(e.buf)})
	}
	e.sortMembers(open, e.members[base:])
	e.members = e.members[:base]
	if len(e.buf) == open {
		e.buf = append(e.buf, '{')
	} else {
		e.buf[open] = '{'
	}
	e.buf = append(e.buf, '}')
	return nil
}

// sortMembers reorders ms, the members written to buf from open, by key,
// bytewise; of members with equal keys (distinct JS keys can have the same
// Go string, lone surrogates becoming U+FFFD) the last one is kept, as in a
// Go map filled in key order.
func (e *encoder) sortMembers(open int, ms []member) {
	sorted := true
	for i := 1; i < len(ms); i++ {
		if ms[i-1].key >= ms[i].key {
			sorted = false
			break
		}
	}
	if sorted {
		return
	}
	slices.SortStableFunc(ms, func(a, b member) int { return strings.Compare(a.key, b.key) })
	end := len(e.buf)
	for i, m := range ms { // the sorted members go after the object, then replace it
		if i+1 < len(ms) && ms[i+1].key == m.key {
			continue
		}
		e.buf = append(e.buf, e.buf[m.start:m.end]...)
	}
	n := copy(e.buf[open:], e.buf[end:])
	e.buf = e.buf[:open+n]
}

// array writes an array; holes and members JSON.stringify omits are null.
func (e *encoder) array(obj *goja.Object) error {
	var n int64
	if err := e.try(func() { n = obj.Get("length").ToInteger() }); err != nil {
		return err
	}
	e.buf = append(e.buf, '[')
	for i := int64(0); i < n; i++ {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		k := strconv.FormatInt(i, 10)
		var val goja.Value
		if err := e.try(func() { val = obj.Get(k) }); err != nil {
			return err
		}
		err := e.property(k, val, false)
		if errors.Is(err, errSkip) {
			e.buf, err = append(e.buf, "null"...), nil
		}
		if err != nil {
			return err
		}
	}
	e.buf = append(e.buf, ']')
	return nil
}

// delegate writes obj (an object, or a primitive of an unknown kind),
// found under key, with JSON.stringify itself: it stringifies {[key]: obj}
// so that a toJSON sees the same key, decodes the member and writes it
// with json.Marshal.
func (e *encoder) delegate(key string, obj goja.Value) error {
	rt := e.v.rt
	holder := rt.NewObject()
	if err := holder.DefineDataProperty(key, obj, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_TRUE); err != nil {
		return notSerialisable(err.Error())
	}
	s, err := e.v.stringify(goja.Undefined(), holder)
	if err != nil {
		return notSerialisable(err.Error())
	}
	var out map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s.String()), &out); err != nil {
		return fmt.Errorf("value is not JSON-serialisable: %w", err)
	}
	raw, ok := out[key]
	if !ok {
		return errSkip
	}
	var x any
	if err := json.Unmarshal(raw, &x); err != nil {
		return fmt.Errorf("value is not JSON-serialisable: %w", err)
	}
	b, err := json.Marshal(x)
	if err != nil {
		return fmt.Errorf("value is not JSON-serialisable: %w", err)
	}
	e.buf = append(e.buf, b...)
	return nil
}

// try runs f, turning a JS exception it throws (a getter, a Proxy trap)
// or an interrupt (the memory watchdog) into an encoding error, as calling
// JSON.stringify would.
func (e *encoder) try(f func()) (err error) {
	defer func() {
		if x := recover(); x != nil {
			ie, ok := x.(*goja.InterruptedError)
			if !ok {
				panic(x)
			}
			err = notSerialisable(ie.Error())
		}
	}()
	if exc := e.v.rt.Try(f); exc != nil {
		return notSerialisable(exc.Error())
	}
	return nil
}

func notSerialisable(msg string) error {
	return fmt.Errorf("value is not JSON-serialisable: %s", firstLine(msg))
}

// appendNumber appends f as JSON.stringify writes it (NaN and ±Infinity
// as null, -0 as 0) in json.Marshal's format for a float64.
func appendNumber(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	if f == 0 {
		return append(b, '0') // also -0
	}
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return strconv.AppendInt(b, int64(f), 10) // what 'f' writes, faster
	}
	format := byte('f')
	if abs := math.Abs(f); abs < 1e-6 || abs >= 1e21 {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 becomes e-9, as in json.Marshal
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendString appends s quoted as json.Marshal quotes a string: <, > and &
// escaped as \u003c etc., control characters escaped, invalid UTF-8 as
// \ufffd, U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
