package agent_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

const manifestResults = `project: results
operations:
  - name: value
    script: value.js
    webhook: {path: value}
  - name: big
    script: big.js
    webhook: {path: big}
`

var resultsFiles = map[string]string{
	"opsrunner.yaml": manifestResults,
	"value.js":       "function handle(event) { return {echo: event.body, html: '<b>&</b>'}; }\n",
	"big.js":         "function handle() { return {big: 'x'.repeat(1 << 20)}; }\n", // just over 1 MiB as JSON
}

// asyncRun starts an async webhook run and waits until it has finished,
// returning the run JSON.
func asyncRun(t *testing.T, ta *testAgent, path string, body []byte) map[string]any {
	t.Helper()
	r := ta.do(t, "POST", path, "application/json", body, map[string]string{"Prefer": "respond-async"})
	if r.Status != http.StatusAccepted {
		t.Fatalf("async %s: %d %s", path, r.Status, r.Body)
	}
	var run map[string]any
	waitFor(t, 10*time.Second, func() bool {
		run = ta.do(t, "GET", r.Header.Get("Location"), "", nil, nil).json(t)
		return run["status"] != "running"
	})
	if run["status"] != "succeeded" {
		t.Fatalf("async run %v: %v", run["status"], run["error"])
	}
	return run
}

// The run JSON of an async webhook run carries what the script returned
// (`result`), up to 1 MiB; past that `resultTruncated` is true and
// `result` absent. A synchronous run without an Idempotency-Key, answered
// already, keeps none.
func TestRunResult(t *testing.T) {
	ta := startAgent(t, nil)
	ta.mustDeploy(t, "results", bundle(t, resultsFiles))

	t.Run("an async run's result is in its run JSON", func(t *testing.T) {
		run := asyncRun(t, ta, "/hooks/results/value", []byte(`{"n":1}`))
		got, _ := json.Marshal(run["result"])
		if string(got) != `{"echo":{"n":1},"html":"\u003cb\u003e\u0026\u003c/b\u003e"}` || run["resultTruncated"] != false {
			t.Fatalf("result %s, resultTruncated %v", got, run["resultTruncated"])
		}
	})
	t.Run("a result over 1 MiB is left out and flagged", func(t *testing.T) {
		run := asyncRun(t, ta, "/hooks/results/big", nil)
		if _, ok := run["result"]; ok || run["resultTruncated"] != true {
			t.Fatalf("result present %v, resultTruncated %v", ok, run["resultTruncated"])
		}
	})
	t.Run("a synchronous run keeps no result", func(t *testing.T) {
		r := ta.do(t, "POST", "/hooks/results/value", "application/json", []byte(`{}`), nil)
		run := ta.do(t, "GET", "/api/v1/runs/"+r.Header.Get("X-Opsrunner-Run"), "", nil, nil).json(t)
		if _, ok := run["result"]; r.Status != http.StatusOK || ok || run["resultTruncated"] != false {
			t.Fatalf("answer %d; run result present %v, resultTruncated %v", r.Status, ok, run["resultTruncated"])
		}
	})
	t.Run("an idempotent replay gives the first answer byte for byte, cut or not", func(t *testing.T) {
		for _, path := range []string{"/hooks/results/value", "/hooks/results/big"} {
			h := map[string]string{"Idempotency-Key": "replay" + path}
			first := ta.do(t, "POST", path, "application/json", []byte(`{"n":2}`), h)
			again := ta.do(t, "POST", path, "application/json", []byte(`{"n":2}`), h)
			if first.Status != http.StatusOK || again.Status != first.Status || !bytes.Equal(again.Body, first.Body) ||
				again.Header.Get("Content-Type") != first.Header.Get("Content-Type") {
				t.Fatalf("%s: first %d %.80s, again %d %.80s", path, first.Status, first.Body, again.Status, again.Body)
			}
			if !strings.Contains(string(first.Body), `"`) {
				t.Fatalf("%s: odd answer %.80s", path, first.Body)
			}
		}
	})
}
