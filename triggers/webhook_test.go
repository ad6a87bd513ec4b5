package triggers

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
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
// for the value src decodes to against shapeBefore on that value.
func checkShape(t *testing.T, src string) {
	t.Helper()
	var value any
	if err := json.Unmarshal([]byte(src), &value); err != nil {
		return
	}
	want, wantErr := shapeBefore(value)
	data, err := json.Marshal(value) // what runtime.Result.JSON holds
	if err != nil {
		t.Fatal(err)
	}
	if value == nil && src != "null" {
		data = nil
	}
	got, err := ShapeResponse(data)
	if (err != nil) != (wantErr != nil) || !reflect.DeepEqual(got, want) {
		t.Fatalf("ShapeResponse(%s):\n got %+v (%v)\nwant %+v (%v)", data, got, err, want, wantErr)
	}
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
