package triggers

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// SignatureHeader carries the HMAC-SHA256 of a webhook body: "sha256=<hex>".
const SignatureHeader = "X-Opsrunner-Signature"

// ErrBadSignature is returned when a webhook's signature is missing or wrong.
var ErrBadSignature = errors.New("missing or invalid " + SignatureHeader + " signature")

// VerifySignature checks header against the HMAC-SHA256 of body under
// secret, in constant time.
func VerifySignature(secret, body []byte, header string) error {
	hexSig, ok := strings.CutPrefix(strings.TrimSpace(header), "sha256=")
	if !ok {
		return ErrBadSignature
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return ErrBadSignature
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return ErrBadSignature
	}
	return nil
}

// Sign returns the SignatureHeader value for body under secret.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// WebhookEvent builds a script's `event` for an HTTP request:
// {method, path, headers, query, body, rawBody}; body is parsed when the
// content type is JSON (application/json or any +json type), and a body
// that does not parse is a *JSONBodyError; an empty body is no body
// (nil), whatever the type. headers and query are func() any values that
// build their maps when called (the runtime calls them only for a script
// that reads them); Resolve replaces them by their maps, for an event that
// outlives the request.
func WebhookEvent(r *http.Request, path string, body []byte) (map[string]any, error) {
	parsed, err := webhookBody(r.Header.Get("Content-Type"), body)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"method":  r.Method,
		"path":    path,
		"headers": func() any { return requestHeaders(r.Header) },
		"query":   func() any { return requestQuery(r.URL.RawQuery) },
		"body":    parsed,
		"rawBody": string(body),
	}, nil
}

// Resolve returns event with each func() any value replaced by its result.
func Resolve(event map[string]any) map[string]any {
	out := make(map[string]any, len(event))
	for k, v := range event {
		if f, ok := v.(func() any); ok {
			v = f()
		}
		out[k] = v
	}
	return out
}

// requestHeaders maps lower-case header names to their values, joined.
func requestHeaders(h http.Header) map[string]any {
	headers := make(map[string]any, len(h))
	for k, v := range h {
		headers[strings.ToLower(k)] = strings.Join(v, ", ")
	}
	return headers
}

// requestQuery maps query parameters to a string, or a list when repeated.
func requestQuery(raw string) map[string]any {
	values, _ := url.ParseQuery(raw)
	query := make(map[string]any, len(values))
	for k, v := range values {
		if len(v) == 1 {
			query[k] = v[0]
			continue
		}
		vs := make([]any, len(v))
		for i, s := range v {
			vs[i] = s
		}
		query[k] = vs
	}
	return query
}

// webhookBody is the event's body: nil when empty, the text unless the
// content type says JSON, else the JSON kept raw (json.RawMessage, which
// the runtime parses straight into JS and json.Marshal writes back
// unchanged). The JSON is validated once; where it broke is worked out
// only when it did.
func webhookBody(contentType string, body []byte) (any, error) {
	switch {
	case len(body) == 0:
		return nil, nil
	case !isJSON(contentType):
		return string(body), nil
	case !json.Valid(body):
		return nil, jsonBodyError(body)
	}
	return json.RawMessage(body), nil
}

// JSONBodyError is a request body sent as JSON that does not parse: why
// (Reason, encoding/json's words) and where. Offset is the 0-based byte
// offset where it broke (the body's length when it ended too soon); Line
// and Column are 1-based, Column counting characters.
type JSONBodyError struct {
	Reason string
	Line   int
	Column int
	Offset int
}

func (e *JSONBodyError) Error() string {
	return fmt.Sprintf("invalid JSON body: %s at line %d, column %d", e.Reason, e.Line, e.Column)
}

// jsonBodyError locates the syntax error in body, which is not valid JSON.
func jsonBodyError(body []byte) *JSONBodyError {
	var v json.RawMessage
	err := json.Unmarshal(body, &v)
	e := &JSONBodyError{Reason: "not valid JSON", Offset: len(body)}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		e.Reason = se.Error()
		// Offset counts the bytes read, the bad one included; at the
		// end of the input there is no bad byte.
		if se.Error() != "unexpected end of JSON input" && se.Offset > 0 {
			e.Offset = int(se.Offset) - 1
		}
	}
	e.Offset = min(e.Offset, len(body))
	before := body[:e.Offset]
	e.Line = bytes.Count(before, []byte("\n")) + 1
	e.Column = utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
	return e
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// Response is the HTTP answer a webhook run produced.
type Response struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    []byte            `json:"body"`
}

// ShapeResponse turns a script's return value, given as its compact JSON
// (runtime.Result.JSON), into the HTTP answer: an object with a numeric
// `status` from 100 to 599 and no members but `status`, `headers` and
// `body` shapes it (a string body is sent as text/plain, another body as
// its JSON, the bytes value holds for it; a header value that is not a
// string is sent as its JSON); any other value is answered as JSON with
// 200, the value's bytes as the body; no value (undefined) or null gives
// 204. Only a value that may be shaped is decoded. An error fails the run:
// such a value was not valid JSON, or its status is a number outside
// 100–599 or a string holding an integer (the error, in words that stand
// on their own, says which).
func ShapeResponse(value []byte) (Response, error) {
	if len(value) == 0 || string(value) == "null" {
		return Response{Status: http.StatusNoContent}, nil
	}
	if mayBeShaped(value) {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(value, &m); err != nil {
			return Response{}, fmt.Errorf("shape response: %w", err)
		}
		if resp, ok, err := shape(m); ok || err != nil {
			return resp, err
		}
	}
	return Response{Status: http.StatusOK, Headers: map[string]string{"Content-Type": "application/json"}, Body: value}, nil
}

// mayBeShaped reports whether value is compact JSON of an object whose
// first member is one of a shaped answer's. Every shaped answer is:
// runtime.Result.JSON is JSON.stringify's output (compact, keys that need
// no escape unescaped) and a shaped answer has no keys but status,
// headers and body, so whichever of them comes first in the object's key
// order (members are not sorted) is its first member.
func mayBeShaped(value []byte) bool {
	for _, prefix := range []string{`{"body":`, `{"headers":`, `{"status":`} {
		if bytes.HasPrefix(value, []byte(prefix)) {
			return true
		}
	}
	return false
}

// shape builds the answer m describes; ok is false when m is not a shaped
// answer, and err says why m meant to be one but cannot (see httpStatus).
func shape(m map[string]json.RawMessage) (resp Response, ok bool, err error) {
	raw, has := m["status"]
	if !has || !onlyKeys(m, "status", "headers", "body") {
		return Response{}, false, nil
	}
	status, ok, err := httpStatus(raw)
	if !ok || err != nil {
		return Response{}, false, err
	}
	resp = Response{Status: status, Headers: map[string]string{}}
	if raw := m["headers"]; len(raw) > 0 && raw[0] == '{' {
		var hs map[string]json.RawMessage
		if err := json.Unmarshal(raw, &hs); err != nil {
			return Response{}, false, fmt.Errorf("shape response: headers: %w", err)
		}
		for k, v := range hs {
			resp.Headers[k] = string(v)
			if len(v) > 0 && v[0] == '"' {
				var s string
				if err := json.Unmarshal(v, &s); err != nil {
					return Response{}, false, fmt.Errorf("shape response: header %s: %w", k, err)
				}
				resp.Headers[k] = s
			}
		}
	}
	body := m["body"]
	switch {
	case len(body) == 0 || string(body) == "null":
	case body[0] == '"':
		var s string
		if err := json.Unmarshal(body, &s); err != nil {
			return Response{}, false, fmt.Errorf("shape response: body: %w", err)
		}
		resp.Body = []byte(s)
		if _, ok := headerValue(resp.Headers, "Content-Type"); !ok {
			resp.Headers["Content-Type"] = "text/plain; charset=utf-8"
		}
	default:
		resp.Body = body
		if _, ok := headerValue(resp.Headers, "Content-Type"); !ok {
			resp.Headers["Content-Type"] = "application/json"
		}
	}
	return resp, true, nil
}

// httpStatus reads the status member of an object that has no members
// but status, headers and body. A number is meant as an HTTP status: one
// that is not an integer from 100 to 599 is an error (sending it as the
// body of a 200 would hide the script's mistake). So is a string holding
// an integer ("200"). Any other value (a word such as "ok", null, true)
// is data: ok is false and the object is answered as JSON.
func httpStatus(raw json.RawMessage) (status int, ok bool, err error) {
	if len(raw) == 0 {
		return 0, false, nil
	}
	switch c := raw[0]; {
	case c == '-' || c >= '0' && c <= '9':
		var f float64
		if json.Unmarshal(raw, &f) != nil || f != math.Trunc(f) || f < 100 || f > 599 {
			return 0, false, fmt.Errorf("status %s is not an HTTP status (an integer from 100 to 599)", cut(raw))
		}
		return int(f), true, nil
	case c == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, false, nil
		}
		if _, err := strconv.Atoi(s); err == nil {
			return 0, false, fmt.Errorf("status %s is a string; an HTTP status is a number from 100 to 599", cut(raw))
		}
	}
	return 0, false, nil
}

// cut shortens a JSON value quoted in an error message.
func cut(raw []byte) string {
	const max = 32
	if len(raw) <= max {
		return string(raw)
	}
	return strings.ToValidUTF8(string(raw[:max]), "") + "…"
}

func onlyKeys(m map[string]json.RawMessage, keys ...string) bool {
	for k := range m {
		if !slices.Contains(keys, k) {
			return false
		}
	}
	return true
}

func headerValue(h map[string]string, name string) (string, bool) {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}
