package agent_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/triggers"
)

const manifestHooks = `project: hooks
operations:
  - name: echo
    script: echo.js
    webhook: {path: echo}
  - name: shaped
    script: shaped.js
    webhook: {path: shaped}
  - name: throws
    script: throws.js
    webhook: {path: throws}
  - name: loop
    script: loop.js
    timeout: 300ms
    webhook: {path: loop}
  - name: recurse
    script: recurse.js
    webhook: {path: recurse}
  - name: hog
    script: hog.js
    timeout: 90s
    webhook: {path: hog}
  - name: signed
    script: echo.js
    webhook: {path: signed, secretEnv: HOOKS_TEST_SECRET}
  - name: counter
    script: counter.js
    webhook: {path: counter}
  - name: request
    script: request.js
    webhook: {path: request}
  - name: values
    script: values.js
    webhook: {path: values}
`

var hooksFiles = map[string]string{
	"opsrunner.yaml": manifestHooks,
	"echo.js":        "function handle(event, ctx) {\n  return {got: event.body, method: event.method, q: event.query, run: ctx.run};\n}\n",
	"shaped.js":      "function handle(event) {\n  return {status: 201, headers: {'X-Test': 'yes'}, body: {created: true}};\n}\n",
	"throws.js":      "function handle(event) {\n  const x = 1;\n  throw new Error('boom ' + x);\n}\n",
	"loop.js":        "function handle() { while (true) {} }\n",
	"recurse.js":     "function f(n) { return f(n + 1) + 1; }\nfunction handle() { return f(0); }\n",
	"hog.js":         "function handle() { let a = []; let i = 0; while (true) { a.push('x'.repeat(1 << 20) + (i++)); } }\n",
	"request.js": "function handle(event) {\n  if (event.headers['x-probe'] !== 'a, b') throw new Error('headers ' + JSON.stringify(event.headers));\n" +
		"  return {tags: event.query.tag, one: event.query.one, type: event.headers['content-type']};\n}\n",
	"values.js": "const values = {\n" +
		"  mixed: () => ({z: 1, a: [undefined, NaN, -0, 1e21, 0.5, '<&>\\u2028'], d: new Date(0), f() {}, n: null, '\u00e9': true}),\n" +
		"  order: () => ({b: 1, a: '<x>'}),\n" +
		"  text: () => ({status: 202, body: '<b>hi</b>'}),\n" +
		"  shaped: () => ({body: [1], status: 201, headers: {'X-N': 2}}),\n" +
		"  promise: () => Promise.resolve({later: true}),\n" +
		"  null: () => null, undef: () => undefined, fn: () => () => 1, nan: () => NaN,\n" +
		"  bigint: () => ({n: 1n}), cycle: () => { const o = {}; o.self = o; return o; },\n" +
		"  toJSONThrows: () => ({toJSON() { throw new Error('no JSON for you'); }}),\n" +
		"};\n" +
		"function handle(event) { return values[event.query.v](); }\n",
	"counter.js": "let n = 0;\nfunction handle() { n++; globalThis.leak = (globalThis.leak || 0) + 1; return {n: n, leak: globalThis.leak}; }\n",
}

func TestWebhooks(t *testing.T) {
	t.Setenv("HOOKS_TEST_SECRET", "s3cret")
	ta := startAgent(t, func(c *agent.Config) { c.MaxBodyBytes = 1024; c.MemoryLimit = 256 << 20 })
	ta.mustDeploy(t, "hooks", bundle(t, hooksFiles))

	t.Run("a plain return value is a JSON 200", func(t *testing.T) {
		r := ta.do(t, "POST", "/hooks/hooks/echo?x=1", "application/json", []byte(`{"name":"Ada"}`), nil)
		if r.Status != 200 {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
		m := r.json(t)
		if got := m["got"].(map[string]any)["name"]; got != "Ada" {
			t.Errorf("body not parsed: %v", m)
		}
		if m["method"] != "POST" || m["q"].(map[string]any)["x"] != "1" {
			t.Errorf("event fields wrong: %v", m)
		}
		if r.Header.Get("X-Opsrunner-Run") == "" || m["run"] != r.Header.Get("X-Opsrunner-Run") {
			t.Errorf("run id header %q vs ctx.run %v", r.Header.Get("X-Opsrunner-Run"), m["run"])
		}
	})
	t.Run("a {status, headers, body} return shapes the answer", func(t *testing.T) {
		r := ta.do(t, "POST", "/hooks/hooks/shaped", "", nil, nil)
		if r.Status != 201 || r.Header.Get("X-Test") != "yes" || !strings.Contains(string(r.Body), `"created":true`) {
			t.Fatalf("got %d %v %s", r.Status, r.Header, r.Body)
		}
	})
	t.Run("return values become JSON as JSON.stringify writes them", func(t *testing.T) {
		tests := []struct {
			v, contentType, body string
			status               int
		}{
			{"mixed", "application/json", `{"z":1,"a":[null,null,0,1e+21,0.5,"<&>` + "\u2028" + `"],"d":"1970-01-01T00:00:00.000Z","n":null,"é":true}`, 200},
			// Members in insertion order, not sorted; <, > and & as they are.
			{"order", "application/json", `{"b":1,"a":"<x>"}`, 200},
			{"text", "text/plain; charset=utf-8", "<b>hi</b>", 202},
			{"shaped", "application/json", "[1]", 201},
			{"promise", "application/json", `{"later":true}`, 200},
			{"null", "", "", 204},
			{"undef", "", "", 204},
			{"fn", "", "", 204},
			{"nan", "", "", 204},
		}
		for _, tt := range tests {
			r := ta.do(t, "POST", "/hooks/hooks/values?v="+tt.v, "", nil, nil)
			if r.Status != tt.status || string(r.Body) != tt.body || r.Header.Get("Content-Type") != tt.contentType {
				t.Errorf("%s: got %d %q %s; want %d %q %s", tt.v, r.Status, r.Header.Get("Content-Type"), r.Body, tt.status, tt.contentType, tt.body)
			}
			if tt.v == "shaped" && r.Header.Get("X-N") != "2" {
				t.Errorf("shaped: header X-N %q, want 2", r.Header.Get("X-N"))
			}
		}
	})
	t.Run("a value JSON cannot represent fails the run with a 500", func(t *testing.T) {
		for v, msg := range map[string]string{"bigint": "BigInt", "cycle": "circular", "toJSONThrows": "no JSON for you"} {
			r := ta.do(t, "POST", "/hooks/hooks/values?v="+v, "", nil, nil)
			if r.Status != 500 || r.errorCode(t) != "script_error" || !strings.Contains(string(r.Body), "not JSON-serialisable") ||
				!strings.Contains(string(r.Body), msg) || !strings.Contains(string(r.Body), "runId") {
				t.Errorf("%s: got %d %s", v, r.Status, r.Body)
			}
		}
	})
	t.Run("a script that throws is a 500 with the error and the run id", func(t *testing.T) {
		r := ta.do(t, "POST", "/hooks/hooks/throws", "", nil, nil)
		if r.Status != 500 || r.errorCode(t) != "script_error" {
			t.Fatalf("got %d %s", r.Status, r.Body)
		}
		body := string(r.Body)
		if !strings.Contains(body, "boom 1") || !strings.Contains(body, "throws.js:3:") || !strings.Contains(body, "runId") {
			t.Errorf("error lacks message, position or run id: %s", body)
		}
		if strings.Contains(body, "goroutine") || strings.Contains(body, ".go:") {
			t.Errorf("error leaks Go internals: %s", body)
		}
	})
	t.Run("an infinite loop times out with 504", func(t *testing.T) {
		start := time.Now()
		r := ta.do(t, "POST", "/hooks/hooks/loop", "", nil, nil)
		if r.Status != 504 || r.errorCode(t) != "timeout" {
			t.Fatalf("got %d %s", r.Status, r.Body)
		}
		if el := time.Since(start); el > 10*time.Second {
			t.Errorf("timeout took %s", el)
		}
	})
	t.Run("deep recursion fails cleanly", func(t *testing.T) {
		r := ta.do(t, "POST", "/hooks/hooks/recurse", "", nil, nil)
		if r.Status != 500 || !strings.Contains(strings.ToLower(string(r.Body)), "stack") {
			t.Fatalf("got %d %s", r.Status, r.Body)
		}
	})
	t.Run("a runaway allocation is stopped", func(t *testing.T) {
		r := ta.do(t, "POST", "/hooks/hooks/hog", "", nil, nil)
		if r.Status != 500 || !strings.Contains(strings.ToLower(string(r.Body)), "memory") {
			t.Fatalf("got %d %s", r.Status, r.Body)
		}
	})
	t.Run("an oversized body is a 413", func(t *testing.T) {
		r := ta.do(t, "POST", "/hooks/hooks/echo", "application/json", []byte(`"`+strings.Repeat("x", 2000)+`"`), nil)
		if r.Status != 413 || r.errorCode(t) != "payload_too_large" {
			t.Fatalf("got %d %s", r.Status, r.Body)
		}
	})
	t.Run("unknown project or path is a 404", func(t *testing.T) {
		for _, p := range []string{"/hooks/nope/echo", "/hooks/hooks/nope"} {
			if r := ta.do(t, "POST", p, "", nil, nil); r.Status != 404 || r.errorCode(t) != "not_found" {
				t.Errorf("%s: got %d %s", p, r.Status, r.Body)
			}
		}
	})
	t.Run("a signed webhook checks the HMAC", func(t *testing.T) {
		body := []byte(`{"a":1}`)
		if r := ta.do(t, "POST", "/hooks/hooks/signed", "application/json", body, nil); r.Status != 401 {
			t.Errorf("unsigned: got %d %s", r.Status, r.Body)
		}
		bad := map[string]string{triggers.SignatureHeader: triggers.Sign([]byte("wrong"), body)}
		if r := ta.do(t, "POST", "/hooks/hooks/signed", "application/json", body, bad); r.Status != 401 {
			t.Errorf("wrong secret: got %d %s", r.Status, r.Body)
		}
		good := map[string]string{triggers.SignatureHeader: triggers.Sign([]byte("s3cret"), body)}
		if r := ta.do(t, "POST", "/hooks/hooks/signed", "application/json", body, good); r.Status != 200 {
			t.Errorf("signed: got %d %s", r.Status, r.Body)
		}
	})
	t.Run("Prefer: respond-async answers 202 with the run's location", func(t *testing.T) {
		r := ta.do(t, "POST", "/hooks/hooks/echo", "application/json", []byte(`{"n":1}`), map[string]string{"Prefer": "respond-async"})
		if r.Status != 202 {
			t.Fatalf("got %d %s", r.Status, r.Body)
		}
		loc := r.Header.Get("Location")
		if !strings.HasPrefix(loc, "/api/v1/runs/") {
			t.Fatalf("Location %q", loc)
		}
		waitFor(t, 10*time.Second, func() bool {
			run := ta.do(t, "GET", loc, "", nil, nil)
			return run.Status == 200 && run.json(t)["status"] == "succeeded"
		})
	})
	t.Run("headers and query reach the script, sync and async", func(t *testing.T) {
		req, _ := http.NewRequest("POST", ta.URL+"/hooks/hooks/request?tag=x&tag=y&one=1", strings.NewReader("text"))
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Add("X-Probe", "a")
		req.Header.Add("X-Probe", "b")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != `{"tags":["x","y"],"one":"1","type":"text/plain"}` {
			t.Fatalf("sync: %d %s", resp.StatusCode, body)
		}
		r := ta.do(t, "POST", "/hooks/hooks/request", "", nil, map[string]string{"Prefer": "respond-async", "X-Probe": "a, b"})
		if r.Status != 202 {
			t.Fatalf("async: %d %s", r.Status, r.Body)
		}
		loc := r.Header.Get("Location")
		waitFor(t, 10*time.Second, func() bool {
			run := ta.do(t, "GET", loc, "", nil, nil).json(t)
			if run["status"] == "failed" {
				t.Fatalf("async run failed: %v", run["error"])
			}
			return run["status"] == "succeeded"
		})
	})
	t.Run("a repeated Idempotency-Key returns the first answer", func(t *testing.T) {
		h := map[string]string{"Idempotency-Key": "k-1"}
		first := ta.do(t, "POST", "/hooks/hooks/counter", "", nil, h)
		second := ta.do(t, "POST", "/hooks/hooks/counter", "", nil, h)
		if first.Status != 200 || string(first.Body) != string(second.Body) ||
			first.Header.Get("X-Opsrunner-Run") != second.Header.Get("X-Opsrunner-Run") {
			t.Fatalf("first %d %s %s, second %d %s %s", first.Status, first.Body, first.Header.Get("X-Opsrunner-Run"),
				second.Status, second.Body, second.Header.Get("X-Opsrunner-Run"))
		}
	})
	t.Run("no state leaks from one run to the next", func(t *testing.T) {
		for i := 0; i < 5; i++ {
			r := ta.do(t, "POST", "/hooks/hooks/counter", "", nil, nil)
			if m := r.json(t); m["n"] != float64(1) || m["leak"] != float64(1) {
				t.Fatalf("run %d saw state of an earlier run: %s", i, r.Body)
			}
		}
	})
	t.Run("the agent keeps serving after all of that", func(t *testing.T) {
		if r := ta.do(t, "POST", "/hooks/hooks/echo", "application/json", []byte(`{}`), nil); r.Status != 200 {
			t.Fatalf("got %d %s", r.Status, r.Body)
		}
	})
	t.Run("runs are recorded and filterable", func(t *testing.T) {
		waitFor(t, 5*time.Second, func() bool {
			r := ta.do(t, "GET", "/api/v1/runs?operation=throws&status=failed", "", nil, nil)
			runs, _ := r.json(t)["runs"].([]any)
			return len(runs) == 1
		})
		r := ta.do(t, "GET", "/api/v1/runs?operation=loop", "", nil, nil)
		runs := r.json(t)["runs"].([]any)
		if len(runs) != 1 {
			t.Fatalf("loop runs: %s", r.Body)
		}
		run := runs[0].(map[string]any)
		for _, k := range []string{"id", "project", "operation", "trigger", "status", "error", "startedAt", "finishedAt", "durationMs", "agent", "logs"} {
			if _, ok := run[k]; !ok {
				t.Errorf("run lacks %q: %v", k, run)
			}
		}
		if run["status"] != "timed_out" || run["trigger"] != "webhook" || run["agent"] != "test-agent" {
			t.Errorf("run = %v", run)
		}
		one := ta.do(t, "GET", "/api/v1/runs/"+run["id"].(string), "", nil, nil)
		if one.Status != 200 || one.json(t)["id"] != run["id"] {
			t.Errorf("get run: %d %s", one.Status, one.Body)
		}
		if r := ta.do(t, "GET", "/api/v1/runs/nope", "", nil, nil); r.Status != 404 || r.errorCode(t) != "not_found" {
			t.Errorf("unknown run: %d %s", r.Status, r.Body)
		}
		page := ta.do(t, "GET", "/api/v1/runs?limit=2", "", nil, nil).json(t)
		if len(page["runs"].([]any)) != 2 || page["next"] == nil {
			t.Errorf("paging: %v", page)
		}
		next := ta.do(t, "GET", fmt.Sprintf("/api/v1/runs?limit=2&before=%s", page["next"]), "", nil, nil).json(t)
		if len(next["runs"].([]any)) != 2 || next["runs"].([]any)[0].(map[string]any)["id"] == page["runs"].([]any)[0].(map[string]any)["id"] {
			t.Errorf("second page: %v", next)
		}
	})
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestManagementNeedsTokenWhenConfigured(t *testing.T) {
	ta := startAgent(t, func(c *agent.Config) { c.Tokens = []agent.Token{agent.AdminToken("tok")} })
	if r := ta.do(t, "GET", "/api/v1/projects", "", nil, nil); r.Status != http.StatusUnauthorized || r.errorCode(t) != "unauthorized" {
		t.Fatalf("without token: %d %s", r.Status, r.Body)
	}
	if r := ta.do(t, "GET", "/api/v1/projects", "", nil, map[string]string{"Authorization": "Bearer tok"}); r.Status != 200 {
		t.Fatalf("with token: %d %s", r.Status, r.Body)
	}
	if r := ta.do(t, "GET", "/healthz", "", nil, nil); r.Status != 200 {
		t.Fatalf("healthz needs no token: %d", r.Status)
	}
}
