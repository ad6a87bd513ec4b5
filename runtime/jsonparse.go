package runtime

import (
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/dop251/goja"
)

// A faster JSON.parse. goja's own JSON.parse tokenises with
// encoding/json's Decoder.Token, which made it ~20% of a webhook
// invocation whose script parses its body. jsonParser handles the common
// case (a string argument, no reviver, valid JSON without surrogate
// escapes) and builds the same values (own data properties, in order,
// later duplicates overwriting); for anything else — invalid input, a
// reviver, a non-string argument, very deep nesting, out-of-range numbers —
// it calls goja's JSON.parse, so errors and edge cases are goja's own.

// maxParseDepth is the nesting beyond which goja's parser takes over.
const maxParseDepth = 512

// errFallback makes jsonParse hand the input to goja's JSON.parse.
type errFallback struct{}

// jsonParse is installed as JSON.parse (before the intrinsics are frozen).
func (v *vm) jsonParse(call goja.FunctionCall) goja.Value {
	if len(call.Arguments) > 0 && goja.IsString(call.Arguments[0]) && goja.IsUndefined(call.Argument(1)) {
		p := jsonParser{v: v, rt: v.rt, s: call.Arguments[0].String()}
		if val, ok := p.parse(); ok {
			return val
		}
	}
	ret, err := v.parse(goja.Undefined(), call.Arguments...)
	if err != nil {
		panic(err) // *goja.Exception: rethrown as the original SyntaxError
	}
	return ret
}

type jsonParser struct {
	v     *vm
	rt    *goja.Runtime
	s     string
	i     int
	depth int
}

// parse parses the whole input; ok is false when goja's parser must decide.
func (p *jsonParser) parse() (val goja.Value, ok bool) {
	defer func() {
		if x := recover(); x != nil {
			if _, fb := x.(errFallback); !fb {
				panic(x)
			}
			val, ok = nil, false
		}
	}()
	val = p.value()
	p.space()
	if p.i != len(p.s) {
		return nil, false
	}
	return val, true
}

func (p *jsonParser) fail() { panic(errFallback{}) }

func (p *jsonParser) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) value() goja.Value {
	p.space()
	if p.i >= len(p.s) {
		p.fail()
	}
	switch c := p.s[p.i]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		return p.rt.ToValue(p.str())
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case p.literal("true"):
		return p.rt.ToValue(true)
	case p.literal("false"):
		return p.rt.ToValue(false)
	case p.literal("null"):
		return goja.Null()
	}
	p.fail()
	return nil
}

func (p *jsonParser) literal(word string) bool {
	if len(p.s)-p.i >= len(word) && p.s[p.i:p.i+len(word)] == word {
		p.i += len(word)
		return true
	}
	return false
}

func (p *jsonParser) enter() {
	p.depth++
	if p.depth > maxParseDepth {
		p.fail()
	}
	p.i++ // the opening bracket
	p.space()
}

func (p *jsonParser) object() goja.Value {
	p.enter()
	o := p.rt.NewObject()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		p.depth--
		return o
	}
	for {
		p.space()
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			p.fail()
		}
		key := p.str()
		p.space()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			p.fail()
		}
		p.i++
		val := p.value()
		if err := p.v.createDataProperty(o, key, val); err != nil {
			p.fail()
		}
		p.space()
		if p.i >= len(p.s) {
			p.fail()
		}
		switch p.s[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			p.depth--
			return o
		default:
			p.fail()
		}
	}
}

func (p *jsonParser) array() goja.Value {
	p.enter()
	var items []any
	if p.i < len(p.s) && p.s[p.i] == ']' {
		p.i++
		p.depth--
		return p.rt.NewArray()
	}
	for {
		items = append(items, p.value())
		p.space()
		if p.i >= len(p.s) {
			p.fail()
		}
		switch p.s[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			p.depth--
			return p.rt.NewArray(items...)
		default:
			p.fail()
		}
	}
}

// str reads a string literal; p.s[p.i] is its opening quote.
func (p *jsonParser) str() string {
	p.i++
	start := p.i
	for p.i < len(p.s) {
		switch c := p.s[p.i]; {
		case c == '"':
			s := p.s[start:p.i]
			p.i++
			return s
		case c == '\\':
			return p.escaped(start)
		case c < 0x20:
			p.fail()
		default:
			p.i++
		}
	}
	p.fail()
	return ""
}

// escaped finishes a string literal that contains escapes.
func (p *jsonParser) escaped(start int) string {
	b := []byte(p.s[start:p.i])
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return string(b)
		case c < 0x20:
			p.fail()
		case c != '\\':
			b = append(b, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.s) {
			p.fail()
		}
		e := p.s[p.i+1]
		p.i += 2
		switch e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			if p.i+4 > len(p.s) {
				p.fail()
			}
			r, err := strconv.ParseUint(p.s[p.i:p.i+4], 16, 32)
			if err != nil || (r >= 0xD800 && r <= 0xDFFF) {
				p.fail() // surrogates: goja's parser decides
			}
			b = utf8.AppendRune(b, rune(r))
			p.i += 4
		default:
			p.fail()
		}
	}
	p.fail()
	return ""
}

func (p *jsonParser) number() goja.Value {
	start := p.i
	digits := func() int {
		n := 0
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.s[p.i] == '-' {
		p.i++
	}
	if p.i < len(p.s) && p.s[p.i] == '0' {
		p.i++
	} else if digits() == 0 {
		p.fail()
	}
	if p.i < len(p.s) && p.s[p.i] == '.' {
		p.i++
		if digits() == 0 {
			p.fail()
		}
	}
	if p.i < len(p.s) && (p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		p.i++
		if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			p.fail()
		}
	}
	// A literal beyond float64's range is ±Infinity, as JSON.parse's
	// StringToNumber makes it (goja's own JSON.parse throws instead).
	f, err := strconv.ParseFloat(p.s[start:p.i], 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		p.fail()
	}
	return p.rt.ToValue(f)
}
