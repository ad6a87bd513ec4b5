package agent_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
)

// A run keeps the body it was started with as its `input` (JSON compacted,
// text as a JSON string), whether the webhook answered synchronously or
// not; a body over 64 KiB is not kept and `inputTruncated` says so.
func TestRunInput(t *testing.T) {
	ta := startAgent(t, nil)
	ta.mustDeploy(t, "results", bundle(t, resultsFiles))
	input := func(contentType, body string) (json.RawMessage, any) {
		t.Helper()
		r := ta.do(t, "POST", "/hooks/results/value", contentType, []byte(body), nil)
		var run struct {
			Input          json.RawMessage `json:"input"`
			InputTruncated any             `json:"inputTruncated"`
		}
		if err := json.Unmarshal(ta.do(t, "GET", "/api/v1/runs/"+r.Header.Get("X-Opsrunner-Run"), "", nil, nil).Body, &run); err != nil {
			t.Fatal(err)
		}
		return run.Input, run.InputTruncated
	}
	for _, tc := range []struct{ contentType, body, want string }{
		{"application/json", "{ \"order\": {\"id\": \"A-1\", \"note\": \"<b>\"} }", `{"order":{"id":"A-1","note":"\u003cb\u003e"}}`},
		{"text/plain", "plain words", `"plain words"`},
	} {
		if got, cut := input(tc.contentType, tc.body); string(got) != tc.want || cut != nil {
			t.Errorf("%s body %q: input %s (truncated %v), want %s", tc.contentType, tc.body, got, cut, tc.want)
		}
	}
	if got, cut := input("application/json", ""); got != nil || cut != nil {
		t.Errorf("no body: input %s (truncated %v), want none", got, cut)
	}
	big := `"` + strings.Repeat("x", 65<<10) + `"`
	if got, cut := input("application/json", big); got != nil || cut != true {
		t.Errorf("a 65 KiB body: input of %d bytes (truncated %v), want none and inputTruncated", len(got), cut)
	}
}

// A listener's run keeps the message body as its input.
func TestListenerRunKeepsTheMessageAsInput(t *testing.T) {
	ta := startAgent(t, nil)
	ta.mustDeploy(t, "inq", bundle(t, map[string]string{
		"opsrunner.yaml": "project: inq\noperations:\n  - {name: take, script: take.js}\nlisteners:\n  - {name: in, destination: /queue/input.test, operations: [take]}\n",
		"take.js":        "function handle(event) {}\n",
	}))
	waitFor(t, 30*time.Second, func() bool {
		return strings.Contains(string(ta.do(t, "GET", "/api/v1/listeners?q=inq", "", nil, nil).Body), `"status":"on"`)
	})
	conn, err := stomp.Dial("tcp", ta.BrokerAddr())
	if err != nil {
		t.Fatalf("dial the embedded broker: %v", err)
	}
	t.Cleanup(func() { _ = conn.Disconnect() })
	if err := conn.Send("/queue/input.test", "application/json", []byte(`{"id": 7}`)); err != nil {
		t.Fatal(err)
	}
	var page struct {
		Runs []struct {
			Status string          `json:"status"`
			Input  json.RawMessage `json:"input"`
		} `json:"runs"`
	}
	waitFor(t, 30*time.Second, func() bool {
		if err := json.Unmarshal(ta.do(t, "GET", "/api/v1/runs?project=inq", "", nil, nil).Body, &page); err != nil {
			t.Fatal(err)
		}
		return len(page.Runs) == 1 && page.Runs[0].Status == "succeeded"
	})
	if got := string(page.Runs[0].Input); got != `{"id":7}` {
		t.Fatalf("input %s, want the message body", got)
	}
}
