package triggers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// shapeBefore is ShapeResponse as it was when it took the script's value
// as exported Go data (where numbers are float64s): the reference
// ShapeResponse must agree with.
func shapeBefore(value any) (Response, error) {
	if m, ok := value.(map[string]any); ok {
		if st, ok := m["status"].(float64); ok && st == float64(int(st)) && st >= 100 && st <= 599 && onlyKeysBefore(m) {
			resp := Response{Status: int(st), Headers: map[string]string{}}
			if hs, ok := m["headers"].(map[string]any); ok {
				for k, v := range hs {
					if s, ok := v.(string); ok {
						resp.Headers[k] = s
					} else {
						b, _ := json.Marshal(v)
						resp.Headers[k] = string(b)
					}
				}
			}
			switch b := m["body"].(type) {
			case nil:
			case string:
				resp.Body = []byte(b)
				if _, ok := headerValue(resp.Headers, "Content-Type"); !ok {
					resp.Headers["Content-Type"] = "text/plain; charset=utf-8"
				}
			default:
				data, err := json.Marshal(b)
				if err != nil {
					return Response{}, err
				}
				resp.Body = data
				if _, ok := headerValue(resp.Headers, "Content-Type"); !ok {
					resp.Headers["Content-Type"] = "application/json"
				}
			}
			return resp, nil
		}
	}
	if value == nil {
		return Response{Status: http.StatusNoContent}, nil
	}
	data, err := json.Marshal(value)
	if err != nil {
		return Response{}, err
	}
	return Response{Status: http.StatusOK, Headers: map[string]string{"Content-Type": "application/json"}, Body: data}, nil
}

func onlyKeysBefore(m map[string]any) bool {
	for k := range m {
		if k != "status" && k != "headers" && k != "body" {
			return false
		}
	}
	return true
}

// checkShape checks ShapeResponse on the JSON runtime.Result.JSON holds
// for the value src decodes to against shapeBefore on that value. Bodies
// and header values that are JSON are compared as the values they decode
// to: shapeBefore writes them as json.Marshal does (keys sorted, <>&
// escaped), ShapeResponse passes on the bytes it was given, in
// JSON.stringify's order and escaping.
func checkShape(t *testing.T, src string) {
	t.Helper()
	var value any
	if err := json.Unmarshal([]byte(src), &value); err != nil {
		return
	}
	want, wantErr := shapeBefore(value)
	data := resultJSON(t, src)
	got, err := ShapeResponse(data)
	if (err != nil) != (wantErr != nil) || !sameAnswer(got, want) {
		t.Fatalf("ShapeResponse(%s):\n got %+v (%v)\nwant %+v (%v)", data, got, err, want, wantErr)
	}
}

// sameAnswer reports whether got and want have the same status and
// headers, and the same bytes or the same JSON value as each header value
// and as the body.
func sameAnswer(got, want Response) bool {
	same := func(a, b []byte) bool {
		if bytes.Equal(a, b) {
			return true
		}
		var x, y any
		return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
	}
	if got.Status != want.Status || (got.Headers == nil) != (want.Headers == nil) || len(got.Headers) != len(want.Headers) ||
		(got.Body == nil) != (want.Body == nil) || !same(got.Body, want.Body) {
		return false
	}
	for k, v := range want.Headers {
		if g, ok := got.Headers[k]; !ok || !same([]byte(g), []byte(v)) {
			return false
		}
	}
	return true
}

// resultJSON writes the JSON value src as runtime.Result.JSON holds it
// for a script that returns JSON.parse(src): compact, members in the
// order they come in src (a repeated key keeps its first place and takes
// its last value) and strings escaped as JSON.stringify escapes them.
// Numbers stay as src writes them, and integer-like keys are not moved
// first: JSON.stringify would, but neither can make a value shaped or
// unshaped (a status must be read as a number anyway, and a shaped answer
// has no integer-like key).
func resultJSON(t *testing.T, src string) []byte {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(src))
	d.UseNumber()
	var value func() any
	value = func() any {
		tok, err := d.Token()
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		switch tok {
		case json.Delim('['):
			var a []any
			for d.More() {
				a = append(a, value())
			}
			_, _ = d.Token()
			return a
		case json.Delim('{'):
			var o orderedObject
			for d.More() {
				k := value().(string)
				v := value()
				if i := slices.IndexFunc(o, func(m orderedMember) bool { return m.key == k }); i >= 0 {
					o[i].value = v
				} else {
					o = append(o, orderedMember{k, v})
				}
			}
			_, _ = d.Token()
			return o
		}
		return tok
	}
	var write func(b []byte, v any) []byte
	write = func(b []byte, v any) []byte {
		switch v := v.(type) {
		case orderedObject:
			b = append(b, '{')
			for i, m := range v {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(quoteJS(b, m.key), ':')
				b = write(b, m.value)
			}
			return append(b, '}')
		case []any:
			b = append(b, '[')
			for i, x := range v {
				if i > 0 {
					b = append(b, ',')
				}
				b = write(b, x)
			}
			return append(b, ']')
		case string:
			return quoteJS(b, v)
		case json.Number:
			return append(b, v...)
		case bool:
			return strconv.AppendBool(b, v)
		}
		return append(b, "null"...)
	}
	return write(nil, value())
}

type orderedMember struct {
	key   string
	value any
}

type orderedObject []orderedMember

// quoteJS appends s quoted as JSON.stringify quotes it: only ", \ and
// control characters escaped.
func quoteJS(b []byte, s string) []byte {
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '\b':
			b = append(b, `\b`...)
		case r == '\f':
			b = append(b, `\f`...)
		case r == '\n':
			b = append(b, `\n`...)
		case r == '\r':
			b = append(b, `\r`...)
		case r == '\t':
			b = append(b, `\t`...)
		case r < 0x20:
			b = fmt.Appendf(b, `\u%04x`, r)
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}

var shapeInputs = []string{
	`null`,
	`1`, `"text"`, `true`, `[]`, `{}`, `[{"status": 200}]`,
	`{"status": 201, "headers": {"X-Test": "yes", "X-N": 2, "X-O": {"b": 1, "a": [null]}, "X-Null": null}, "body": {"created": true, "html": "<&>"}}`,
	`{"status": 202, "body": "<b>hi</b>"}`,
	`{"status": 202, "body": "x", "headers": {"content-type": "text/html"}}`,
	`{"status": 200, "body": [1, 2], "headers": {"CONTENT-TYPE": "application/x"}}`,
	`{"status": 204}`, `{"status": 200, "body": null}`, `{"status": 200, "body": ""}`, `{"status": 200, "body": 0}`, `{"status": 200, "body": false}`,
	`{"status": 200, "headers": "not an object"}`, `{"status": 200, "headers": ["a"]}`, `{"status": 200, "headers": null}`,
	`{"status": 99}`, `{"status": 600}`, `{"status": 100}`, `{"status": 599}`, `{"status": 200.5}`, `{"status": 2e2}`,
	`{"status": "200"}`, `{"status": null}`, `{"status": true}`,
	`{"status": 200, "extra": 1}`, `{"body": "no status"}`, `{"headers": {}}`, `{"a": 1, "status": 200}`,
	`{"body": 1, "status": 200}`, `{"statuses": 200}`, `{"status": 200, "body": {"status": 500}}`,
	`{"body": "x", "headers": {"b": 1, "a": "<&>"}, "status": 200}`, `{"headers": {}, "status": 201}`,
	`{"headers": {"X": "1"}, "body": {"b": [1, {"z": null, "a": "\u2028"}], "a": 2}, "status": 200}`,
	`{"\u0073tatus": 200, "body": "escaped key"}`, `{"status": 200, "status": 201}`, `{"x": 1, "status": 200, "x": 2}`,
	`{"b": 1, "a": "<x>", "2": 3}`, `[{"b": 1, "a": 2}, "\u003c\u0000"]`,
}

func TestShapeResponse(t *testing.T) {
	t.Parallel()
	for _, src := range shapeInputs {
		checkShape(t, src)
	}
	for _, empty := range [][]byte{nil, {}} {
		if got, err := ShapeResponse(empty); err != nil || got.Status != http.StatusNoContent || got.Body != nil {
			t.Errorf("ShapeResponse(%q) = %+v, %v; want 204 with no body", empty, got, err)
		}
	}
	// The body is the value's JSON itself, not a copy.
	data := []byte(`{"a":1}`)
	if got, _ := ShapeResponse(data); &got.Body[0] != &data[0] {
		t.Error("ShapeResponse copied the body")
	}
}

func FuzzShapeResponse(f *testing.F) {
	for _, src := range shapeInputs {
		f.Add(src)
	}
	f.Fuzz(checkShape)
}
