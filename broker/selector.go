package broker

// JMS message selectors (the SQL-92 subset of the JMS specification) over
// STOMP headers. Identifiers are header names; JMSPriority, JMSMessageID,
// JMSCorrelationID, JMSType, JMSTimestamp, JMSExpiration, JMSReplyTo and
// JMSRedelivered name the headers priority, message-id, correlation-id, type,
// timestamp, expires, reply-to and redelivered. Header values are strings;
// compared with a number or used in arithmetic, a value that parses as a
// number is that number, and "true"/"false" compared with a boolean are
// booleans. A missing header is NULL, with SQL's three-valued logic; a
// message matches only when the selector is TRUE.

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// selector is a compiled selector; goroutine-safe.
type selector struct {
	root node
}

// maxSelectorDepth bounds nesting so hostile selectors cannot exhaust the stack.
const maxSelectorDepth = 64

// CheckSelector reports whether text is a selector this broker accepts on
// SUBSCRIBE, with the error it would answer otherwise: a deploy can refuse a
// listener whose selector would be rejected on every connection attempt.
func CheckSelector(text string) error {
	_, err := parseSelector(strings.TrimSpace(text))
	return err
}

func parseSelector(text string) (*selector, error) {
	if len(text) > 16<<10 {
		return nil, errors.New("selector too long")
	}
	toks, err := lex(text)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, fmt.Errorf("unexpected %q at offset %d", t.text, t.pos)
	}
	return &selector{root: n}, nil
}

// matches reports whether the selector is TRUE for a message whose headers
// get looks up.
func (s *selector) matches(get func(string) (string, bool)) bool {
	b, ok := s.root.eval(get).boolean()
	return ok && b
}

// values

type kind uint8

const (
	kNull kind = iota
	kBool
	kNum
	kStr
	kRaw // a header value: a string that may be read as a number or boolean
)

type value struct {
	k kind
	b bool
	n float64
	s string
}

var null = value{}

func boolean(b bool) value { return value{k: kBool, b: b} }

func (v value) num() (float64, bool) {
	switch v.k {
	case kNum:
		return v.n, true
	case kRaw:
		f, err := strconv.ParseFloat(strings.TrimSpace(v.s), 64)
		return f, err == nil
	}
	return 0, false
}

func (v value) boolean() (bool, bool) {
	switch v.k {
	case kBool:
		return v.b, true
	case kRaw:
		switch strings.ToLower(v.s) {
		case "true":
			return true, true
		case "false":
			return false, true
		}
	}
	return false, false
}

// nodes

type node interface {
	eval(get func(string) (string, bool)) value
}

type litNode struct{ v value }

func (n litNode) eval(func(string) (string, bool)) value { return n.v }

type identNode struct{ name string }

var jmsHeaders = map[string]string{
	"JMSPriority": "priority", "JMSMessageID": "message-id", "JMSCorrelationID": "correlation-id",
	"JMSType": "type", "JMSTimestamp": "timestamp", "JMSExpiration": "expires",
	"JMSReplyTo": "reply-to", "JMSRedelivered": "redelivered", "JMSDestination": "destination",
}

func (n identNode) eval(get func(string) (string, bool)) value {
	if s, ok := get(n.name); ok {
		return value{k: kRaw, s: s}
	}
	return null
}

type notNode struct{ x node }

func (n notNode) eval(get func(string) (string, bool)) value {
	b, ok := n.x.eval(get).boolean()
	if !ok {
		return null
	}
	return boolean(!b)
}

type andNode struct{ l, r node }

func (n andNode) eval(get func(string) (string, bool)) value {
	l, lok := n.l.eval(get).boolean()
	if lok && !l {
		return boolean(false)
	}
	r, rok := n.r.eval(get).boolean()
	if rok && !r {
		return boolean(false)
	}
	if lok && rok {
		return boolean(true)
	}
	return null
}

type orNode struct{ l, r node }

func (n orNode) eval(get func(string) (string, bool)) value {
	l, lok := n.l.eval(get).boolean()
	if lok && l {
		return boolean(true)
	}
	r, rok := n.r.eval(get).boolean()
	if rok && r {
		return boolean(true)
	}
	if lok && rok {
		return boolean(false)
	}
	return null
}

type arithNode struct {
	op   byte
	l, r node
}

func (n arithNode) eval(get func(string) (string, bool)) value {
	l, lok := n.l.eval(get).num()
	r, rok := n.r.eval(get).num()
	if !lok || !rok {
		return null
	}
	var x float64
	switch n.op {
	case '+':
		x = l + r
	case '-':
		x = l - r
	case '*':
		x = l * r
	case '/':
		if r == 0 {
			return null
		}
		x = l / r
	}
	return value{k: kNum, n: x}
}

type negNode struct{ x node }

func (n negNode) eval(get func(string) (string, bool)) value {
	x, ok := n.x.eval(get).num()
	if !ok {
		return null
	}
	return value{k: kNum, n: -x}
}

type cmpNode struct {
	op   string
	l, r node
}

// compare returns -1, 0, 1, or ok=false when the values are not comparable.
func compare(l, r value) (int, bool) {
	if l.k == kNull || r.k == kNull {
		return 0, false
	}
	if l.k == kNum || r.k == kNum {
		a, aok := l.num()
		b, bok := r.num()
		if !aok || !bok {
			return 0, false
		}
		switch {
		case a < b:
			return -1, true
		case a > b:
			return 1, true
		}
		return 0, true
	}
	if l.k == kBool || r.k == kBool {
		a, aok := l.boolean()
		b, bok := r.boolean()
		if !aok || !bok {
			return 0, false
		}
		if a == b {
			return 0, true
		}
		return 2, true // unordered but different
	}
	return strings.Compare(l.s, r.s), true
}

func (n cmpNode) eval(get func(string) (string, bool)) value {
	c, ok := compare(n.l.eval(get), n.r.eval(get))
	if !ok {
		return null
	}
	switch n.op {
	case "=":
		return boolean(c == 0)
	case "<>":
		return boolean(c != 0)
	}
	if c == 2 {
		return null
	}
	switch n.op {
	case "<":
		return boolean(c < 0)
	case ">":
		return boolean(c > 0)
	case "<=":
		return boolean(c <= 0)
	default: // ">="
		return boolean(c >= 0)
	}
}

type betweenNode struct {
	x, lo, hi node
	not       bool
}

func (n betweenNode) eval(get func(string) (string, bool)) value {
	x := n.x.eval(get)
	v := andNode{litCmp(">=", x, n.lo.eval(get)), litCmp("<=", x, n.hi.eval(get))}.eval(get)
	if n.not {
		return notNode{litNode{v}}.eval(get)
	}
	return v
}

func litCmp(op string, l, r value) node {
	return litNode{cmpNode{op, litNode{l}, litNode{r}}.eval(nil)}
}

type inNode struct {
	x   node
	set []string
	not bool
}

func (n inNode) eval(get func(string) (string, bool)) value {
	v := n.x.eval(get)
	if v.k == kNull {
		return null
	}
	s := v.s
	if v.k == kNum {
		s = strconv.FormatFloat(v.n, 'g', -1, 64)
	} else if v.k == kBool {
		s = strconv.FormatBool(v.b)
	}
	found := false
	for _, x := range n.set {
		if x == s {
			found = true
			break
		}
	}
	return boolean(found != n.not)
}

type likeNode struct {
	x   node
	re  *regexp.Regexp
	not bool
}

func (n likeNode) eval(get func(string) (string, bool)) value {
	v := n.x.eval(get)
	if v.k != kStr && v.k != kRaw {
		return null
	}
	return boolean(n.re.MatchString(v.s) != n.not)
}

type isNullNode struct {
	x   node
	not bool
}

func (n isNullNode) eval(get func(string) (string, bool)) value {
	return boolean((n.x.eval(get).k == kNull) != n.not)
}

func likePattern(pat, esc string) (*regexp.Regexp, error) {
	var escRune rune = -1
	if esc != "" {
		rs := []rune(esc)
		if len(rs) != 1 {
			return nil, errors.New("ESCAPE must be a single character")
		}
		escRune = rs[0]
	}
	var sb strings.Builder
	sb.WriteString(`^(?s:`)
	rs := []rune(pat)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == escRune:
			i++
			if i == len(rs) {
				return nil, errors.New("LIKE pattern ends with its escape character")
			}
			sb.WriteString(regexp.QuoteMeta(string(rs[i])))
		case r == '%':
			sb.WriteString(`.*`)
		case r == '_':
			sb.WriteString(`.`)
		default:
			sb.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	sb.WriteString(`)$`)
	return regexp.Compile(sb.String())
}

// lexer

type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tKeyword
	tNum
	tStr
	tOp
)

type token struct {
	kind tokKind
	text string // keywords upper-cased
	pos  int
}

var keywords = map[string]bool{
	"AND": true, "OR": true, "NOT": true, "BETWEEN": true, "IN": true, "LIKE": true,
	"ESCAPE": true, "IS": true, "NULL": true, "TRUE": true, "FALSE": true,
}

func lex(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '\'':
			var sb strings.Builder
			j := i + 1
			for {
				if j >= len(s) {
					return nil, fmt.Errorf("unterminated string at offset %d", i)
				}
				if s[j] == '\'' {
					if j+1 < len(s) && s[j+1] == '\'' {
						sb.WriteByte('\'')
						j += 2
						continue
					}
					break
				}
				sb.WriteByte(s[j])
				j++
			}
			toks = append(toks, token{tStr, sb.String(), i})
			i = j + 1
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			j := i
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
				j++
			}
			if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
				k := j + 1
				if k < len(s) && (s[k] == '+' || s[k] == '-') {
					k++
				}
				if k < len(s) && s[k] >= '0' && s[k] <= '9' {
					j = k
					for j < len(s) && s[j] >= '0' && s[j] <= '9' {
						j++
					}
				}
			}
			text := s[i:j]
			if j < len(s) && (s[j] == 'l' || s[j] == 'L') { // Java long suffix
				j++
			}
			toks = append(toks, token{tNum, text, i})
			i = j
		case c == '_' || c == '$' || c < 0x80 && unicode.IsLetter(rune(c)):
			j := i
			for j < len(s) && (s[j] == '_' || s[j] == '$' || s[j] == '.' || s[j] < 0x80 && (unicode.IsLetter(rune(s[j])) || unicode.IsDigit(rune(s[j])))) {
				j++
			}
			w := s[i:j]
			if up := strings.ToUpper(w); keywords[up] {
				toks = append(toks, token{tKeyword, up, i})
			} else {
				toks = append(toks, token{tIdent, w, i})
			}
			i = j
		default:
			for _, op := range []string{"<>", "<=", ">=", "=", "<", ">", "+", "-", "*", "/", "(", ")", ","} {
				if strings.HasPrefix(s[i:], op) {
					toks = append(toks, token{tOp, op, i})
					i += len(op)
					goto next
				}
			}
			return nil, fmt.Errorf("unexpected character %q at offset %d", c, i)
		next:
		}
	}
	return append(toks, token{kind: tEOF, text: "end of selector", pos: len(s)}), nil
}

// parser (recursive descent)

type parser struct {
	toks  []token
	i     int
	depth int
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) is(kind tokKind, text string) bool {
	t := p.peek()
	return t.kind == kind && t.text == text
}

func (p *parser) accept(kind tokKind, text string) bool {
	if p.is(kind, text) {
		p.i++
		return true
	}
	return false
}

func (p *parser) expect(kind tokKind, text string) error {
	if !p.accept(kind, text) {
		t := p.peek()
		return fmt.Errorf("expected %s, got %q at offset %d", text, t.text, t.pos)
	}
	return nil
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > maxSelectorDepth {
		return errors.New("selector nested too deeply")
	}
	return nil
}

func (p *parser) or() (node, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.accept(tKeyword, "OR") {
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = orNode{l, r}
	}
	return l, nil
}

func (p *parser) and() (node, error) {
	l, err := p.not()
	if err != nil {
		return nil, err
	}
	for p.accept(tKeyword, "AND") {
		r, err := p.not()
		if err != nil {
			return nil, err
		}
		l = andNode{l, r}
	}
	return l, nil
}

func (p *parser) not() (node, error) {
	if p.accept(tKeyword, "NOT") {
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer func() { p.depth-- }()
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		return notNode{x}, nil
	}
	return p.comparison()
}

func (p *parser) comparison() (node, error) {
	l, err := p.sum()
	if err != nil {
		return nil, err
	}
	t := p.peek()
	if t.kind == tOp {
		switch t.text {
		case "=", "<>", "<", ">", "<=", ">=":
			p.next()
			r, err := p.sum()
			if err != nil {
				return nil, err
			}
			return cmpNode{t.text, l, r}, nil
		}
	}
	if p.accept(tKeyword, "IS") {
		not := p.accept(tKeyword, "NOT")
		if err := p.expect(tKeyword, "NULL"); err != nil {
			return nil, err
		}
		return isNullNode{l, not}, nil
	}
	not := p.accept(tKeyword, "NOT")
	switch {
	case p.accept(tKeyword, "BETWEEN"):
		lo, err := p.sum()
		if err != nil {
			return nil, err
		}
		if err := p.expect(tKeyword, "AND"); err != nil {
			return nil, err
		}
		hi, err := p.sum()
		if err != nil {
			return nil, err
		}
		return betweenNode{l, lo, hi, not}, nil
	case p.accept(tKeyword, "IN"):
		if err := p.expect(tOp, "("); err != nil {
			return nil, err
		}
		var set []string
		for {
			t := p.next()
			switch t.kind {
			case tStr:
				set = append(set, t.text)
			case tNum:
				f, err := strconv.ParseFloat(t.text, 64)
				if err != nil {
					return nil, fmt.Errorf("bad number %q", t.text)
				}
				set = append(set, strconv.FormatFloat(f, 'g', -1, 64), t.text)
			default:
				return nil, fmt.Errorf("IN list wants literals, got %q at offset %d", t.text, t.pos)
			}
			if p.accept(tOp, ")") {
				break
			}
			if err := p.expect(tOp, ","); err != nil {
				return nil, err
			}
		}
		return inNode{l, set, not}, nil
	case p.accept(tKeyword, "LIKE"):
		t := p.next()
		if t.kind != tStr {
			return nil, fmt.Errorf("LIKE wants a string pattern, got %q at offset %d", t.text, t.pos)
		}
		esc := ""
		if p.accept(tKeyword, "ESCAPE") {
			e := p.next()
			if e.kind != tStr {
				return nil, fmt.Errorf("ESCAPE wants a string, got %q at offset %d", e.text, e.pos)
			}
			esc = e.text
		}
		re, err := likePattern(t.text, esc)
		if err != nil {
			return nil, err
		}
		return likeNode{l, re, not}, nil
	}
	if not {
		t := p.peek()
		return nil, fmt.Errorf("expected BETWEEN, IN or LIKE after NOT, got %q at offset %d", t.text, t.pos)
	}
	return l, nil
}

func (p *parser) sum() (node, error) {
	l, err := p.product()
	if err != nil {
		return nil, err
	}
	for p.is(tOp, "+") || p.is(tOp, "-") {
		op := p.next().text[0]
		r, err := p.product()
		if err != nil {
			return nil, err
		}
		l = arithNode{op, l, r}
	}
	return l, nil
}

func (p *parser) product() (node, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.is(tOp, "*") || p.is(tOp, "/") {
		op := p.next().text[0]
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = arithNode{op, l, r}
	}
	return l, nil
}

func (p *parser) unary() (node, error) {
	if p.is(tOp, "-") || p.is(tOp, "+") {
		neg := p.next().text == "-"
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer func() { p.depth-- }()
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		if neg {
			return negNode{x}, nil
		}
		return x, nil
	}
	t := p.next()
	switch t.kind {
	case tNum:
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("bad number %q at offset %d", t.text, t.pos)
		}
		return litNode{value{k: kNum, n: f}}, nil
	case tStr:
		return litNode{value{k: kStr, s: t.text}}, nil
	case tIdent:
		name := t.text
		if h, ok := jmsHeaders[name]; ok {
			name = h
		}
		return identNode{name}, nil
	case tKeyword:
		switch t.text {
		case "TRUE":
			return litNode{boolean(true)}, nil
		case "FALSE":
			return litNode{boolean(false)}, nil
		case "NULL":
			return litNode{null}, nil
		}
	case tOp:
		if t.text == "(" {
			x, err := p.or()
			if err != nil {
				return nil, err
			}
			if err := p.expect(tOp, ")"); err != nil {
				return nil, err
			}
			return x, nil
		}
	}
	return nil, fmt.Errorf("unexpected %q at offset %d", t.text, t.pos)
}
