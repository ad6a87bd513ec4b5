package triggers

import (
	"bytes"
	"encoding/json"
	"errors"
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
// as exported Go data (where numbers are float64s), with the status rule
// of issue 19 (notHTTPStatus): the reference ShapeResponse must agree with.
func shapeBefore(value any) (Response, error) {
	if m, ok := value.(map[string]any); ok {
		if st, has := m["status"]; has && onlyKeysBefore(m) && notHTTPStatus(st) {
			return Response{}, fmt.Errorf("status %v is not an HTTP status", st)
		}
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

// notHTTPStatus reports whether the status of an object meant as a
// shaped answer is a mistake: a number that is not an integer from 100 to
// 599, or a string holding an integer.
func notHTTPStatus(st any) bool {
	switch st := st.(type) {
	case float64:
		return st != float64(int(st)) || st < 100 || st > 599
	case string:
		_, err := strconv.Atoi(st)
		return err == nil
	}
	return false
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
	// Issue 19: a status outside 100–599 fails the run; a word is data.
	`{"status": 99999, "body": "x"}`, `{"status": 0}`, `{"status": -1, "body": "x"}`, `{"status": -0}`,
	`{"body": "x", "status": 1e3}`, `{"status": 1e400}`, `{"status": 199.99999}`, `{"status": 12345678901234567890123456789012345678901234567890}`,
	`{"status": "200", "body": "x"}`, `{"status": "-1"}`, `{"status": "ok"}`, `{"status": "200 OK"}`, `{"status": ""}`,
	`{"status": {"code": 200}}`, `{"status": [200]}`, `{"status": 99999, "extra": 1}`, `{"status": "200", "extra": 1}`,
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

// A script's status that is not an HTTP status fails the run with an
// error that says so in words of its own (issue 19: it used to be sent as
// the body of a 200).
func TestShapeResponseRefusesAStatusOutside100To599(t *testing.T) {
	t.Parallel()
	for value, want := range map[string]string{
		`{"status":99999,"body":"x"}`: "status 99999 is not an HTTP status (an integer from 100 to 599)",
		`{"status":0}`:                "status 0 is not an HTTP status (an integer from 100 to 599)",
		`{"body":"x","status":-1}`:    "status -1 is not an HTTP status (an integer from 100 to 599)",
		`{"status":200.5}`:            "status 200.5 is not an HTTP status (an integer from 100 to 599)",
		`{"status":99}`:               "status 99 is not an HTTP status (an integer from 100 to 599)",
		`{"status":600}`:              "status 600 is not an HTTP status (an integer from 100 to 599)",
		`{"status":1e400}`:            "status 1e400 is not an HTTP status (an integer from 100 to 599)",
		`{"status":"200","body":"x"}`: `status "200" is a string; an HTTP status is a number from 100 to 599`,
		`{"status":` + strings.Repeat("9", 100) + `}`: "status " + strings.Repeat("9", 32) +
			"… is not an HTTP status (an integer from 100 to 599)",
	} {
		if got, err := ShapeResponse([]byte(value)); err == nil || err.Error() != want {
			t.Errorf("ShapeResponse(%s) = %+v, %v; want the error %q", value, got, err, want)
		}
	}
	// Values that are data stay data: a word as status, or other members.
	for _, value := range []string{`{"status":"ok"}`, `{"status":null,"body":"x"}`, `{"status":99999,"extra":1}`} {
		if got, err := ShapeResponse([]byte(value)); err != nil || got.Status != http.StatusOK || string(got.Body) != value {
			t.Errorf("ShapeResponse(%s) = %+v, %v; want it as a JSON 200", value, got, err)
		}
	}
}

func FuzzShapeResponse(f *testing.F) {
	for _, src := range shapeInputs {
		f.Add(src)
	}
	f.Fuzz(checkShape)
}

// A body sent as JSON that does not parse is an error saying where it
// broke (issue 19: it used to reach the script as text); JSON, text and an
// empty body build the event.
func TestWebhookEventJSONBody(t *testing.T) {
	t.Parallel()
	event := func(contentType, body string) (map[string]any, error) {
		r, _ := http.NewRequest(http.MethodPost, "/hooks/p/x", strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		return WebhookEvent(r, "x", []byte(body))
	}
	for _, tt := range []struct {
		contentType, body, reason string
		line, column, offset      int
	}{
		{"application/json", `{"a":`, "unexpected end of JSON input", 1, 6, 5},
		{"application/json", "{\n  \"a\": 1,\n}", "invalid character '}' looking for beginning of object key string", 3, 1, 12},
		{"application/json; charset=utf-8", `{"é": x}`, "invalid character 'x' looking for beginning of value", 1, 7, 7},
		{"application/problem+json", `nope`, "invalid character 'o' in literal null (expecting 'u')", 1, 2, 1},
		{"application/json", `{} {}`, "invalid character '{' after top-level value", 1, 4, 3},
		{"application/json", "[1,}", "invalid character '}' looking for beginning of value", 1, 4, 3},
		{"application/json", "  ", "unexpected end of JSON input", 1, 3, 2},
		{"application/json", "\n\n\"ab", "unexpected end of JSON input", 3, 4, 5},
	} {
		_, err := event(tt.contentType, tt.body)
		var je *JSONBodyError
		if !errors.As(err, &je) {
			t.Errorf("%q as %s: error %v, want a *JSONBodyError", tt.body, tt.contentType, err)
			continue
		}
		want := JSONBodyError{Reason: tt.reason, Line: tt.line, Column: tt.column, Offset: tt.offset}
		if *je != want {
			t.Errorf("%q as %s: %+v, want %+v", tt.body, tt.contentType, *je, want)
		}
		if msg := fmt.Sprintf("invalid JSON body: %s at line %d, column %d", tt.reason, tt.line, tt.column); je.Error() != msg {
			t.Errorf("%q: message %q, want %q", tt.body, je.Error(), msg)
		}
	}
	for _, tt := range []struct {
		contentType, body string
		want              any
	}{
		{"application/json", `{"a":1}`, json.RawMessage(`{"a":1}`)},
		{"application/json", "", nil},
		{"text/plain", "{nope", "{nope"},
		{"", "{nope", "{nope"},
		{"application/jsonx", "{nope", "{nope"},
	} {
		ev, err := event(tt.contentType, tt.body)
		if err != nil || !reflect.DeepEqual(ev["body"], tt.want) {
			t.Errorf("%q as %q: body %#v, %v; want %#v", tt.body, tt.contentType, ev["body"], err, tt.want)
		}
	}
}

// BenchmarkWebhookEvent measures building a webhook's event for a small
// valid JSON body, the hot path: one json.Valid, no parse.
func BenchmarkWebhookEvent(b *testing.B) {
	body := []byte(`{"id": 42, "name": "widget", "tags": ["a", "b"], "price": 9.5}`)
	r, _ := http.NewRequest(http.MethodPost, "/hooks/p/x", nil)
	r.Header.Set("Content-Type", "application/json")
	b.ReportAllocs()
	for b.Loop() {
		if ev, err := WebhookEvent(r, "x", body); err != nil || ev["body"] == nil {
			b.Fatal(err)
		}
	}
}
