package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/internal/agenttest"
	"github.com/opsrunner/opsrunner/scripts"
)

// testAgent is a real agent (embedded broker, bbolt store) on free
// loopback ports, serving the console, for one test.
type testAgent struct {
	URL   string
	token string // sent on API calls when set
}

// startAgent runs an agent with embedded defaults; mutate adjusts the
// configuration first. It stops when the test ends.
func startAgent(t *testing.T, mutate func(*agent.Config)) *testAgent {
	t.Helper()
	cfg := agenttest.Config(t, "console-test")
	if mutate != nil {
		mutate(&cfg)
	}
	a, err := agent.New(cfg, nil)
	if err != nil {
		t.Fatalf("new agent: %v", err)
	}
	agenttest.Serve(t, a)
	return &testAgent{URL: "http://" + a.HTTPAddr()}
}

// do sends one request and returns the status and body.
func (ta *testAgent) do(t *testing.T, method, path, contentType string, body []byte) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, ta.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if ta.token != "" {
		req.Header.Set("Authorization", "Bearer "+ta.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, data
}

// getJSON GETs path, wants 200 and decodes the answer into v.
func (ta *testAgent) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	status, body := ta.do(t, http.MethodGet, path, "", nil)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

// deploy uploads a bundle and wants it accepted.
func (ta *testAgent) deploy(t *testing.T, project string, bundle []byte) {
	t.Helper()
	status, body := ta.do(t, http.MethodPut, "/api/v1/projects/"+project, "application/gzip", bundle)
	if status != http.StatusCreated {
		t.Fatalf("deploy %s: %d %s", project, status, body)
	}
}

// sampleBundle packs a folder under samples/.
func sampleBundle(t *testing.T, name string) []byte {
	t.Helper()
	b, err := scripts.BundleDir(filepath.Join("..", "samples", name))
	if err != nil {
		t.Fatalf("bundle sample %s: %v", name, err)
	}
	return b
}

// bundle packs a project from files.
func bundle(t *testing.T, files map[string]string) []byte {
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

// eventually polls cond until it holds, failing the test (naming what)
// when it does not within a minute. It bounds a wait; it asserts nothing
// about speed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
