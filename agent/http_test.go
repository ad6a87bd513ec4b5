package agent_test

import (
	"net/http"
	"strings"
	"testing"
)

// webFiles is a project "web": echo answers what the script got as its
// body; status answers {status: <query s>, body: "x"}.
var webFiles = map[string]string{
	"opsrunner.yaml": "project: web\noperations:\n" +
		"  - name: echo\n    script: echo.js\n    webhook: {path: echo}\n" +
		"  - name: status\n    script: status.js\n    webhook: {path: status}\n",
	"echo.js": "function handle(event) { return {got: event.body === undefined ? 'undefined' : event.body}; }\n",
	"status.js": "const statuses = {ok: 201, big: 99999, zero: 0, neg: -1, frac: 200.5, low: 99, high: 600, text: '200', word: 'ok'};\n" +
		"function handle(event) { return {status: statuses[event.query.s], body: 'x'}; }\n",
}

// httpCase is one request and the answer ordinary HTTP semantics expect.
type httpCase struct {
	name        string
	method      string
	path        string
	contentType string
	body        string
	status      int
	code        string            // error code, "" for a success
	headers     map[string]string // headers the answer must have (value contained)
	contains    []string          // strings the answer's body must contain
}

// TestHTTPSemantics drives the HTTP surface with requests a user might
// send and checks each answer's status, error code and headers (issue 19).
func TestHTTPSemantics(t *testing.T) {
	ta := startAgent(t, nil)
	ta.mustDeploy(t, "web", bundle(t, webFiles))

	tests := []httpCase{
		// Invalid JSON sent as JSON is a 400 that says where it broke.
		{name: "truncated JSON", method: "POST", path: "/hooks/web/echo", contentType: "application/json", body: `{"a":`,
			status: 400, code: "invalid_json",
			contains: []string{"invalid JSON body: ", "at line 1, column 6", `"line":1`, `"column":6`, `"offset":5`}},
		{name: "JSON broken on line 3", method: "POST", path: "/hooks/web/echo", contentType: "application/json; charset=utf-8",
			body: "{\n  \"a\": 1,\n}", status: 400, code: "invalid_json",
			contains: []string{"invalid character '}'", "at line 3, column 1", `"line":3`, `"column":1`, `"offset":12`}},
		{name: "columns count characters", method: "POST", path: "/hooks/web/echo", contentType: "application/json",
			body: `{"é": x}`, status: 400, code: "invalid_json", contains: []string{"at line 1, column 7"}},
		{name: "+json media type", method: "POST", path: "/hooks/web/echo", contentType: "application/vnd.api+json", body: "nope",
			status: 400, code: "invalid_json"},
		{name: "data after the value", method: "POST", path: "/hooks/web/echo", contentType: "application/json", body: `{} {}`,
			status: 400, code: "invalid_json", contains: []string{"after top-level value", "column 4"}},
		{name: "valid JSON runs", method: "POST", path: "/hooks/web/echo", contentType: "application/json", body: `{"a":1}`,
			status: 200, contains: []string{`{"got":{"a":1}}`}},
		{name: "an empty JSON body is no body", method: "POST", path: "/hooks/web/echo", contentType: "application/json",
			status: 200, contains: []string{`{"got":null}`}},
		{name: "text is not parsed", method: "POST", path: "/hooks/web/echo", contentType: "text/plain", body: `{nope`,
			status: 200, contains: []string{`{"got":"{nope"}`}},

		// A method the route does not take is a 405 with Allow.
		{name: "GET a webhook", method: "GET", path: "/hooks/web/echo", status: 405, code: "method_not_allowed",
			headers: map[string]string{"Allow": "POST"}},
		{name: "DELETE the runs", method: "DELETE", path: "/api/v1/runs", status: 405, code: "method_not_allowed",
			headers: map[string]string{"Allow": "GET"}},
		{name: "POST healthz", method: "POST", path: "/healthz", status: 405, code: "method_not_allowed",
			headers: map[string]string{"Allow": "GET"}},
		{name: "HEAD healthz is GET without the body", method: "HEAD", path: "/healthz", status: 200},
		{name: "OPTIONS lists the methods", method: "OPTIONS", path: "/api/v1/projects/web", status: 204,
			headers: map[string]string{"Allow": "PUT"}},
		{name: "POST a project", method: "POST", path: "/api/v1/projects/web", status: 405, code: "method_not_allowed",
			headers: map[string]string{"Allow": "PUT"}},

		// An unknown path is a 404 not_found.
		{name: "unknown API path", method: "GET", path: "/api/v1/nosuch", status: 404, code: "not_found"},
		{name: "unknown API version", method: "GET", path: "/api/v2/x", status: 404, code: "not_found"},
		{name: "unknown root path", method: "GET", path: "/nosuch", status: 404, code: "not_found"},
		{name: "webhook without path", method: "POST", path: "/hooks/web", status: 404, code: "not_found"},
		{name: "API root", method: "GET", path: "/api/v1", status: 404, code: "not_found"},
		{name: "deep unknown API path", method: "GET", path: "/api/v1/projects/web/nosuch", status: 404, code: "not_found"},
		{name: "unknown listener sub-path", method: "PUT", path: "/api/v1/listeners/x/nosuch", status: 404, code: "not_found"},

		// A status outside 100–599 is a run failure that says so.
		{name: "status 201 shapes the answer", method: "POST", path: "/hooks/web/status?s=ok", status: 201, contains: []string{"x"}},
		{name: "status 99999", method: "POST", path: "/hooks/web/status?s=big", status: 500, code: "script_error",
			contains: []string{"status 99999 is not an HTTP status", "runId"}},
		{name: "status 0", method: "POST", path: "/hooks/web/status?s=zero", status: 500, code: "script_error",
			contains: []string{"status 0 is not an HTTP status"}},
		{name: "status -1", method: "POST", path: "/hooks/web/status?s=neg", status: 500, code: "script_error",
			contains: []string{"status -1 is not an HTTP status"}},
		{name: "status 200.5", method: "POST", path: "/hooks/web/status?s=frac", status: 500, code: "script_error",
			contains: []string{"status 200.5 is not an HTTP status"}},
		{name: "status 99", method: "POST", path: "/hooks/web/status?s=low", status: 500, code: "script_error"},
		{name: "status 600", method: "POST", path: "/hooks/web/status?s=high", status: 500, code: "script_error"},
		{name: `status "200"`, method: "POST", path: "/hooks/web/status?s=text", status: 500, code: "script_error",
			contains: []string{`status \"200\" is a string`}},
		{name: `status "ok" is data`, method: "POST", path: "/hooks/web/status?s=word", status: 200,
			contains: []string{`{"status":"ok","body":"x"}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body []byte
			if tt.body != "" {
				body = []byte(tt.body)
			}
			r := ta.do(t, tt.method, tt.path, tt.contentType, body, nil)
			checkAnswer(t, tt, r)
		})
	}
}

// checkAnswer checks r against what tt expects.
func checkAnswer(t *testing.T, tt httpCase, r response) {
	t.Helper()
	if r.Status != tt.status {
		t.Fatalf("%s %s: status %d, want %d: %s", tt.method, tt.path, r.Status, tt.status, r.Body)
	}
	if tt.code != "" {
		if got := r.errorCode(t); got != tt.code {
			t.Errorf("%s %s: code %q, want %q: %s", tt.method, tt.path, got, tt.code, r.Body)
		}
	}
	for k, v := range tt.headers {
		if got := r.Header.Get(k); !strings.Contains(got, v) {
			t.Errorf("%s %s: header %s %q, want it to hold %q", tt.method, tt.path, k, got, v)
		}
	}
	for _, s := range tt.contains {
		if !strings.Contains(string(r.Body), s) {
			t.Errorf("%s %s: answer lacks %q: %s", tt.method, tt.path, s, r.Body)
		}
	}
}

// TestProjectNamesAtDeploy checks the Contract's project name rule at
// deploy: lowercase letters, digits, -, _, .; not starting with .; at most
// 63 characters. Others are a 400 invalid_project_name before the body is
// read, and nothing is deployed.
func TestProjectNamesAtDeploy(t *testing.T) {
	ta := startAgent(t, nil)
	named := func(name string) []byte {
		return bundle(t, map[string]string{
			"opsrunner.yaml": "project: " + name + "\noperations:\n  - name: hi\n    script: hi.js\n",
			"hi.js":          "function handle() { return 1; }\n",
		})
	}
	long63 := strings.Repeat("a", 63)
	for _, name := range []string{"orders", "a", "jms-orders", "v1.2_x", "0", long63} {
		t.Run("valid "+name, func(t *testing.T) {
			if r := ta.deploy(t, name, named(name)); r.Status != http.StatusCreated {
				t.Fatalf("deploy %q: %d %s", name, r.Status, r.Body)
			}
		})
	}
	for _, tc := range []struct{ name, escaped string }{
		{"..", ".."},
		{".hidden", ".hidden"},
		{"a b💥", "a%20b%F0%9F%92%A5"},
		{"Orders", "Orders"},
		{"a/b", "a%2Fb"},
		{"a:b", "a:b"},
		{strings.Repeat("a", 64), strings.Repeat("a", 64)},
		{strings.Repeat("x", 300), strings.Repeat("x", 300)},
	} {
		t.Run("invalid "+tc.escaped[:min(len(tc.escaped), 20)], func(t *testing.T) {
			r := ta.deploy(t, tc.escaped, named(tc.name))
			if r.Status != http.StatusBadRequest || r.errorCode(t) != "invalid_project_name" ||
				!strings.Contains(string(r.Body), "lowercase letters, digits") {
				t.Fatalf("deploy %q: %d %s", tc.name, r.Status, r.Body)
			}
			// Checked before the body is read: a body deploy would refuse
			// (415) does not change the answer.
			r = ta.do(t, http.MethodPut, "/api/v1/projects/"+tc.escaped, "text/plain", []byte("junk"), nil)
			if r.Status != http.StatusBadRequest || r.errorCode(t) != "invalid_project_name" {
				t.Fatalf("deploy %q with a text body: %d %s", tc.name, r.Status, r.Body)
			}
		})
	}
	r := ta.do(t, http.MethodGet, "/api/v1/projects", "", nil, nil)
	if n := strings.Count(string(r.Body), `"name"`); n != 6 {
		t.Errorf("%d projects deployed, want the 6 valid ones: %s", n, r.Body)
	}
}
