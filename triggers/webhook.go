package triggers

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
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

// ShapeResponse turns a script's return value into the HTTP answer: an
// object with a numeric `status` (and optional `headers`, `body`) shapes it;
// any other value is answered as JSON with 200; undefined/null gives 204.
func ShapeResponse(value any) (Response, error) {
	if m, ok := value.(map[string]any); ok {
		if st, ok := numeric(m["status"]); ok && st >= 100 && st <= 599 && onlyKeys(m, "status", "headers", "body") {
			resp := Response{Status: st, Headers: map[string]string{}}
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

func onlyKeys(m map[string]any, keys ...string) bool {
	for k := range m {
		found := false
		for _, want := range keys {
			if k == want {
				found = true
				break
			}
		}
		if !found {
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

func numeric(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case float64:
		if n == float64(int(n)) {
			return int(n), true
		}
	}
	return 0, false
}
