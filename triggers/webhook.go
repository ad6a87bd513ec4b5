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
	"strings"
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
// content type is JSON (and left as text when it does not parse). headers
// and query are func() any values that build their maps when called (the
// runtime calls them only for a script that reads them); Resolve replaces
// them by their maps, for an event that outlives the request.
func WebhookEvent(r *http.Request, path string, body []byte) map[string]any {
	return map[string]any{
		"method":  r.Method,
		"path":    path,
		"headers": func() any { return requestHeaders(r.Header) },
		"query":   func() any { return requestQuery(r.URL.RawQuery) },
		"body":    webhookBody(r.Header.Get("Content-Type"), body),
		"rawBody": string(body),
	}
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

// webhookBody is ParseBody for the hot path: valid JSON stays raw
// (json.RawMessage), which the runtime parses straight into JS and
// json.Marshal writes back unchanged.
func webhookBody(contentType string, body []byte) any {
	if len(body) > 0 && isJSON(contentType) && json.Valid(body) {
		return json.RawMessage(body)
	}
	return ParseBody(contentType, body)
}

// ParseBody returns JSON-decoded data when contentType says JSON and the
// bytes parse, else the text.
func ParseBody(contentType string, body []byte) any {
	if len(body) == 0 {
		return nil
	}
	if isJSON(contentType) {
		var v any
		if err := json.Unmarshal(body, &v); err == nil {
			return v
		}
	}
	return string(body)
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
// 204. Only a value that may be shaped is decoded; an error means such a
// value was not valid JSON.
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
// answer.
func shape(m map[string]json.RawMessage) (resp Response, ok bool, err error) {
	var status float64
	if json.Unmarshal(m["status"], &status) != nil || status != math.Trunc(status) || status < 100 || status > 599 ||
		!onlyKeys(m, "status", "headers", "body") {
		return Response{}, false, nil
	}
	resp = Response{Status: int(status), Headers: map[string]string{}}
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
