package runtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/dop251/goja"
)

// Encoding a script's result as JSON. Exporting it to Go data and then
// json.Marshal-ing that was ~10% of a webhook invocation; encoder writes
// the JSON straight from the JS value instead. It follows the steps of
// JSON.stringify's SerializeJSONProperty (toJSON, getters and Proxy traps
// run once, in the same order) over ordinary objects and arrays and hands
// anything else (Dates, boxed primitives, Proxies, Maps, Errors, host
// objects, very deep values) to JSON.stringify itself, appending what it
// writes. The bytes are goja's JSON.stringify(value) (no indentation):
// members in the order of the object's keys (integer keys ascending, then
// insertion order), strings escaped only where JSON must be (", \ and
// control characters; a lone surrogate as \udXXX), numbers as
// Number.prototype.toString writes them (NaN and ±Infinity as null).
//
// One known difference, kept from the exporter encoder replaced: a
// delegated object that a toJSON returned is asked for its toJSON again (a
// Date from toJSON becomes its ISO string, not {}). goja gives an object's
// keys to Go as strings, where a lone surrogate becomes U+FFFD and the key
// finds no property; an object with a key containing U+FFFD is therefore
// delegated whole, which writes its keys exactly, but looks up its toJSON
// a second time (see object).

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
// serialised (for cycle detection, as JSON.stringify's stack).
type encoder struct {
	v     *vm
	buf   []byte
	stack []*goja.Object
	limit int // bytes; Config.MaxAllocBytes
}

// errTooLarge is the error of an encoding past encoder.limit: a value can
// share its parts (let x = [s]; x = [x, x] ...), so its JSON can be
// exponentially larger than the value.
func (e *encoder) tooLarge() error {
	return fmt.Errorf("RangeError: the value's JSON is larger than the %s a single allocation may take", byteSize(uint64(e.limit)))
}

// encodeJSON returns the JSON of a JS value: the bytes JSON.stringify(val)
// returns (see the comment above for the one known difference). Cycles and
// BigInts are errors with JSON.stringify's messages, as are exceptions
// thrown by getters, toJSON and Proxy traps; an interrupt or a stack
// overflow is returned as the *goja.InterruptedError or
// *goja.StackOverflowError (errors.As), for the caller to say which limit
// was reached. It returns
// nil, nil when JSON.stringify would return undefined (undefined, a
// function, a symbol).
func (v *vm) encodeJSON(val goja.Value) ([]byte, error) {
	// The stack's array is the runtime's, reused; an encoding within this
	// one (a toJSON calling a host function that encodes) makes its own.
	stack := v.encStack
	if stack == nil {
		stack = make([]*goja.Object, 0, 8)
	}
	v.encStack = nil
	e := encoder{v: v, buf: make([]byte, 0, 128), stack: stack, limit: int(min(v.e.cfg.MaxAllocBytes, math.MaxInt))}
	defer func() {
		clear(e.stack[:cap(e.stack)]) // keeps no objects alive
		v.encStack = e.stack[:0]
	}()
	// Getters, toJSON and Proxy traps run inside; what they throw ends the
	// encoding. One try around it all: one per property read was a tenth
	// of encoding a small result.
	var err error
	if terr := e.try(func() { err = e.property("", val, false) }); terr != nil {
		return nil, terr
	}
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
		if fn, ok := goja.AssertFunction(obj.Get("toJSON")); ok {
			ret, err := fn(obj, e.v.rt.ToValue(key))
			if err != nil {
				return e.jsFailure(err)
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
	return e.object(key, obj)
}

// primitive writes a value that is not an object.
func (e *encoder) primitive(key string, val goja.Value) error {
	switch val.ExportType() {
	case nil: // null
		e.buf = append(e.buf, "null"...)
	case boolType:
		e.buf = strconv.AppendBool(e.buf, val.ToBoolean())
	case stringType:
		e.buf = appendJSString(e.buf, val)
	case int64Type:
		// An integer number (at most 2**53 in magnitude), written as
		// goja writes it.
		e.buf = strconv.AppendInt(e.buf, val.ToInteger(), 10)
	case floatType:
		e.buf = appendNumber(e.buf, val.ToFloat())
	case bigIntType:
		return notSerialisable("TypeError: Do not know how to serialize a BigInt")
	default:
		return e.delegate(key, val)
	}
	return nil
}

// object writes a plain object found under key, its members in the order
// of obj.Keys() (JSON.stringify's order, in which getters run).
//
// goja hands keys to Go as Go strings, where a lone surrogate becomes
// U+FFFD: such a key writes wrongly and finds no property (or another
// one), and distinct JS keys could become the same Go string, i.e. a
// duplicate member. So an object with a key containing U+FFFD is delegated
// whole, before any of its properties is read: JSON.stringify writes its
// keys exactly and never repeats one (the price: it looks up the object's
// toJSON again, which only a toJSON getter could notice). Keys without
// U+FFFD are distinct JS strings, so no object written here has duplicate
// members.
func (e *encoder) object(key string, obj *goja.Object) error {
	keys := obj.Keys()
	for _, k := range keys {
		if strings.Contains(k, "\ufffd") {
			return e.delegate(key, obj)
		}
	}
	open := len(e.buf)
	e.buf = append(e.buf, '{')
	for _, k := range keys {
		val := obj.Get(k)
		start := len(e.buf)
		if start > open+1 {
			e.buf = append(e.buf, ',')
		}
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
		if len(e.buf) > e.limit {
			return e.tooLarge()
		}
	}
	e.buf = append(e.buf, '}')
	return nil
}

// array writes an array; holes and members JSON.stringify omits are null.
func (e *encoder) array(obj *goja.Object) error {
	n := obj.Get("length").ToInteger()
	e.buf = append(e.buf, '[')
	for i := int64(0); i < n; i++ {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		k := strconv.FormatInt(i, 10)
		err := e.property(k, obj.Get(k), false)
		if errors.Is(err, errSkip) {
			e.buf, err = append(e.buf, "null"...), nil
		}
		if err != nil {
			return err
		}
		if len(e.buf) > e.limit {
			return e.tooLarge()
		}
	}
	e.buf = append(e.buf, ']')
	return nil
}

// delegate writes val (an object, or a primitive of an unknown kind),
// found under key, with JSON.stringify itself: it stringifies {[key]: val}
// so that a toJSON sees the same key, and appends the member's value from
// the output as it is.
func (e *encoder) delegate(key string, val goja.Value) error {
	holder := e.v.rt.NewObject()
	if err := holder.DefineDataProperty(key, val, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_TRUE); err != nil {
		return notSerialisable(err.Error())
	}
	s, err := e.v.stringifyBounded(holder, uint64(max(e.limit-len(e.buf), 0)))
	if err != nil {
		return e.jsFailure(err)
	}
	out := s.String() // {"key":value}, or {} when JSON.stringify omits val
	if out == "{}" {
		return errSkip
	}
	i := 2 // to the key's closing quote, whatever escapes the key needed
	for i < len(out) && out[i] != '"' {
		if out[i] == '\\' {
			i++
		}
		i++
	}
	if len(out) < i+3 || out[0] != '{' || out[i+1] != ':' || out[len(out)-1] != '}' {
		return fmt.Errorf("value is not JSON-serialisable: unexpected JSON.stringify output %.40q", out)
	}
	e.buf = append(e.buf, out[i+2:len(out)-1]...)
	return nil
}

// try runs f, turning a JS exception it throws (a getter, a Proxy trap)
// into an encoding error, as calling JSON.stringify would; an interrupt or
// a stack overflow (uncatchable in goja) is returned as it is.
func (e *encoder) try(f func()) (err error) {
	defer func() {
		if x := recover(); x != nil {
			switch x := x.(type) {
			case *goja.InterruptedError:
				err = x
			case *goja.StackOverflowError:
				err = x
			default:
				panic(x)
			}
		}
	}()
	if exc := e.v.rt.Try(f); exc != nil {
		return notSerialisable(exc.Error())
	}
	return nil
}

// jsFailure is the encoding error for err, returned by a JS function the
// encoder called: an interrupt or a stack overflow is returned as it is
// (callers map it to the limit that was reached, with the script's
// position), anything else is the exception's message.
func (e *encoder) jsFailure(err error) error {
	if le := limitReached(err); le != nil {
		return le
	}
	var ex *goja.Exception
	if errors.As(err, &ex) {
		return notSerialisable(e.v.safeString(ex.Value())) // without the stack
	}
	return notSerialisable(err.Error())
}

func notSerialisable(msg string) error {
	return fmt.Errorf("value is not JSON-serialisable: %s", firstLine(msg))
}

// appendNumber appends f as JSON.stringify writes a number: NaN and
// ±Infinity as null, anything else as Number.prototype.toString does
// (ECMA-262 Number::toString with radix 10). With s the shortest decimal
// digits that read back as |f| (k of them) and n the position of the
// decimal point relative to s (|f| = 0.s × 10^n):
//
//	k ≤ n ≤ 21:  s followed by n-k zeros          1e20 → 100000000000000000000
//	0 < n ≤ 21:  s with a point after n digits    123.456
//	-6 < n ≤ 0:  0. then -n zeros then s          1e-6 → 0.000001
//	otherwise:   s[0], then .s[1:] if k > 1, then e, + or -, |n-1|
//	                                              1e21 → 1e+21, 1.5e-7
//
// preceded by - when f < 0; -0 is 0.
func appendNumber(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	if f == 0 {
		return append(b, '0') // also -0
	}
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		// An integer below 2**53 is its own shortest digits: the rule's
		// first case, written faster.
		return strconv.AppendInt(b, int64(f), 10)
	}
	if f < 0 {
		b = append(b, '-')
		f = -f
	}
	// Shortest round-trip digits in the form d[.ddd]e±x: s is d then ddd.
	var scratch [32]byte
	m := strconv.AppendFloat(scratch[:0], f, 'e', -1, 64)
	ePos := bytes.IndexByte(m, 'e')
	exp := 0
	for _, c := range m[ePos+2:] {
		exp = exp*10 + int(c-'0')
	}
	if m[ePos+1] == '-' {
		exp = -exp
	}
	s := m[:ePos]
	if len(s) > 1 {
		s = append(s[:1], s[2:]...) // drop the point (in place)
	}
	k, n := len(s), exp+1
	switch {
	case k <= n && n <= 21:
		b = append(b, s...)
		for range n - k {
			b = append(b, '0')
		}
	case 0 < n && n <= 21:
		b = append(b, s[:n]...)
		b = append(b, '.')
		b = append(b, s[n:]...)
	case -6 < n && n <= 0:
		b = append(b, '0', '.')
		for range -n {
			b = append(b, '0')
		}
		b = append(b, s...)
	default:
		b = append(b, s[0])
		if k > 1 {
			b = append(b, '.')
			b = append(b, s[1:]...)
		}
		b = append(b, 'e')
		if n-1 >= 0 {
			b = append(b, '+')
		}
		b = strconv.AppendInt(b, int64(n-1), 10)
	}
	return b
}

// appendJSString appends the JS string val quoted as JSON.stringify quotes
// it. val.String() reads a lone surrogate back as U+FFFD, so a string
// containing U+FFFD is quoted from its UTF-16 code units instead, where a
// lone surrogate is written escaped, as \udXXX, and U+FFFD as itself.
func appendJSString(b []byte, val goja.Value) []byte {
	s := val.String()
	if strings.Contains(s, "\ufffd") {
		if js, ok := val.(goja.String); ok {
			return appendUTF16(b, js)
		}
	}
	return appendString(b, s)
}

// appendString appends s quoted as JSON.stringify quotes a string: ", \
// and control characters (below U+0020) escaped, \b \f \n \r \t by
// name and the others as \u00xx (lowercase hex); anything else as it is
// (no escaping of <, >, &, U+2028 or U+2029). A byte that is not part of
// valid UTF-8 is written as U+FFFD, as goja reads such a byte of a Go
// string.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			b = appendEscape(b, c)
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, "\ufffd"...)
			start = i + 1
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendUTF16 is appendString for a JS string read as UTF-16 code units,
// with a lone surrogate escaped as \udXXX, as JSON.stringify writes it.
func appendUTF16(b []byte, s goja.String) []byte {
	b = append(b, '"')
	n := s.Length()
	for i := 0; i < n; i++ {
		c := rune(s.CharAt(i))
		switch {
		case c < utf8.RuneSelf:
			if c >= 0x20 && c != '"' && c != '\\' {
				b = append(b, byte(c))
			} else {
				b = appendEscape(b, byte(c))
			}
		case utf16.IsSurrogate(c):
			if c < 0xdc00 && i+1 < n {
				if c2 := rune(s.CharAt(i + 1)); 0xdc00 <= c2 && c2 < 0xe000 {
					b = utf8.AppendRune(b, utf16.DecodeRune(c, c2))
					i++
					continue
				}
			}
			b = append(b, '\\', 'u', hexDigits[c>>12], hexDigits[c>>8&0xF], hexDigits[c>>4&0xF], hexDigits[c&0xF])
		default:
			b = utf8.AppendRune(b, c)
		}
	}
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendEscape appends the escape of c, an ASCII character that
// JSON.stringify escapes (", \ or a control character).
func appendEscape(b []byte, c byte) []byte {
	switch c {
	case '\\', '"':
		return append(b, '\\', c)
	case '\b':
		return append(b, '\\', 'b')
	case '\f':
		return append(b, '\\', 'f')
	case '\n':
		return append(b, '\\', 'n')
	case '\r':
		return append(b, '\\', 'r')
	case '\t':
		return append(b, '\\', 't')
	}
	return append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
}
