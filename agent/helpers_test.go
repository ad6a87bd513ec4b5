package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/internal/agenttest"
	"github.com/opsrunner/opsrunner/scripts"
)

// testAgent is an agent serving on free loopback ports for one test.
type testAgent struct {
	*agent.Agent
	URL  string
	stop func() // shuts the agent down and waits; idempotent
}

// requestTimeout bounds a test's request to an agent: one that never
// answers fails the test, naming the request, instead of hanging the
// package until go test's own timeout.
const requestTimeout = 2 * time.Minute

// startAgent runs an agent with embedded defaults on free ports; mutate
// adjusts the configuration first.
func startAgent(t testing.TB, mutate func(*agent.Config)) *testAgent {
	t.Helper()
	return startLoggedAgent(t, mutate, nil)
}

// startLoggedAgent is startAgent with the agent's log going to log (nil:
// discarded).
func startLoggedAgent(t testing.TB, mutate func(*agent.Config), log *slog.Logger) *testAgent {
	t.Helper()
	cfg := agenttest.Config(t, "")
	madeUp := cfg.AgentID
	cfg.AgentID = "test-agent"
	if mutate != nil {
		mutate(&cfg)
	}
	if cfg.AgentID == "" { // mutate asks for the id Defaults made up
		cfg.AgentID = madeUp
	}
	a, err := agent.New(cfg, log)
	if err != nil {
		t.Fatalf("new agent: %v", err)
	}
	ta := &testAgent{Agent: a, URL: "http://" + a.HTTPAddr()}
	ta.stop = agenttest.Serve(t, a)
	return ta
}

// bundle packs a project from files.
func bundle(t testing.TB, files map[string]string) []byte {
	t.Helper()
	m := make(map[string][]byte, len(files))
	for k, v := range files {
		m[k] = []byte(v)
	}
	var buf bytes.Buffer
	if err := scripts.WriteBundle(&buf, m); err != nil {
		t.Fatalf("write bundle: %v", err)
	}
	return buf.Bytes()
}

// sampleBundle packs a folder under samples/.
func sampleBundle(t testing.TB, name string) []byte {
	t.Helper()
	b, err := scripts.BundleDir(filepath.Join("..", "samples", name))
	if err != nil {
		t.Fatalf("bundle sample %s: %v", name, err)
	}
	return b
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

// errorCode returns the code of a JSON error answer.
func (r response) errorCode(t testing.TB) string {
	t.Helper()
	m := r.json(t)
	e, ok := m["error"].(map[string]any)
	if !ok {
		t.Fatalf("answer has no error object: %s", r.Body)
	}
	for _, k := range []string{"code", "message"} {
		if _, ok := e[k].(string); !ok {
			t.Fatalf("error lacks %q: %s", k, r.Body)
		}
	}
	return e["code"].(string)
}

func (ta *testAgent) do(t testing.TB, method, path, contentType string, body []byte, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, ta.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(rctx))
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

func (ta *testAgent) deploy(t testing.TB, project string, b []byte) response {
	t.Helper()
	return ta.do(t, http.MethodPut, "/api/v1/projects/"+project, "application/gzip", b, nil)
}

func (ta *testAgent) mustDeploy(t testing.TB, project string, b []byte) {
	t.Helper()
	if r := ta.deploy(t, project, b); r.Status != http.StatusCreated {
		t.Fatalf("deploy %s: %d %s", project, r.Status, r.Body)
	}
}
