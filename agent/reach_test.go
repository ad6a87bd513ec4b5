package agent_test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/agent"
)

// reachProject is a project whose webhook "call" fetches event.body.url
// with the secret API_KEY as a bearer token and returns what it got.
func reachProject(t *testing.T, egress string) []byte {
	t.Helper()
	return reachProjectTimeout(t, egress, "20s")
}

// reachProjectTimeout is reachProject with the given operation timeout.
func reachProjectTimeout(t *testing.T, egress, timeout string) []byte {
	t.Helper()
	return bundle(t, map[string]string{
		"opsrunner.yaml": `project: reach
egress: [` + egress + `]
env:
  GREETING: hello
operations:
  - name: call
    script: call.js
    timeout: ` + timeout + `
    webhook:
      path: call
  - name: leak
    script: leak.js
    webhook:
      path: leak
  - name: echo
    script: echo.js
    webhook:
      path: echo
`,
		"echo.js": `function handle() { return {key: secrets.API_KEY}; }`,
		"leak.js": `function handle() { throw new Error("rejected key " + secrets.API_KEY); }`,
		"call.js": `async function handle(event) {
	log.info("calling with key " + secrets.API_KEY);
	try {
		const resp = await fetch(event.body.url, {headers: {Authorization: "Bearer " + secrets.API_KEY}});
		const data = await resp.json();
		return {status: resp.status, data, greeting: env.GREETING};
	} catch (e) {
		return {error: e.name + ": " + e.message};
	}
}`,
	})
}

func callReach(t *testing.T, ta *testAgent, url string) map[string]any {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"url": url})
	r := ta.do(t, http.MethodPost, "/hooks/reach/call", "application/json", body, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("webhook: %d %s", r.Status, r.Body)
	}
	return r.json(t)
}

func TestAScriptCallsAnAllowedServiceWithASecret(t *testing.T) {
	t.Parallel()
	const key = "sk-reach-test-5f1e2d"
	var gotAuth atomic.Value
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth.Store(r.Header.Get("Authorization"))
		fmt.Fprint(w, `{"price": 42}`)
	}))
	t.Cleanup(up.Close)
	var logs strings.Builder
	var logMu sync.Mutex
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ta := startLoggedAgent(t, func(c *agent.Config) { c.DataDir = dir }, log)
	ta.mustDeploy(t, "reach", reachProject(t, `"127.0.0.1"`))
	if r := ta.do(t, http.MethodPut, "/api/v1/projects/reach/secrets/API_KEY", "", []byte(key), nil); r.Status != http.StatusNoContent {
		t.Fatalf("set secret: %d %s", r.Status, r.Body)
	}

	got := callReach(t, ta, up.URL+"/price")
	if got["status"] != 200.0 || got["greeting"] != "hello" || fmt.Sprint(got["data"]) != "map[price:42]" {
		t.Fatalf("answer %v", got)
	}
	if gotAuth.Load() != "Bearer "+key {
		t.Fatalf("upstream saw Authorization %q", gotAuth.Load())
	}

	failed := ta.do(t, http.MethodPost, "/hooks/reach/leak", "application/json", []byte(`{}`), nil)
	if failed.Status != http.StatusInternalServerError || !strings.Contains(string(failed.Body), "rejected key ***") {
		t.Fatalf("failing webhook: %d %s; want 500 with the key redacted", failed.Status, failed.Body)
	}

	queued := ta.do(t, http.MethodPost, "/hooks/reach/echo", "application/json", []byte(`{}`), map[string]string{"Prefer": "respond-async"})
	if queued.Status != http.StatusAccepted {
		t.Fatalf("async webhook: %d %s", queued.Status, queued.Body)
	}
	waitForRuns(t, ta, "echo", 1)

	// The value is nowhere in what the agent wrote: answers, run records
	// (the kept result of the async run among them), logs, files.
	runs := ta.do(t, http.MethodGet, "/api/v1/runs?limit=10", "", nil, nil)
	if !strings.Contains(string(runs.Body), `"result":{"key":"***"}`) {
		t.Fatalf("the async run's kept result is not there redacted: %s", runs.Body)
	}
	if !strings.Contains(string(runs.Body), "calling with key ***") || !strings.Contains(string(runs.Body), "rejected key ***") {
		t.Fatalf("run records lack the redacted log line or error: %s", runs.Body)
	}
	ta.stop()
	written := []string{string(failed.Body), string(runs.Body), logs.String()}
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(path)
			written = append(written, string(b))
		}
		return nil
	})
	for _, w := range written {
		if strings.Contains(w, key) {
			t.Fatalf("the secret's value is in what the agent wrote: %.300q", w)
		}
	}
}

func TestAFetchOutsideEgressFailsBeforeConnecting(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(up.Close)
	ta := startAgent(t, nil)
	ta.mustDeploy(t, "reach", reachProject(t, `"api.example.com"`))

	got := callReach(t, ta, up.URL)
	want := "TypeError: fetch to 127.0.0.1 is not allowed: add it to egress in opsrunner.yaml"
	if msg, _ := got["error"].(string); !strings.HasPrefix(msg, "TypeError: fetch to 127.0.0.1") || !strings.Contains(msg, "egress in opsrunner.yaml") {
		t.Fatalf("answer %v, want an error like %q", got, want)
	}
	if hits.Load() != 0 {
		t.Fatalf("the upstream saw %d requests", hits.Load())
	}
}

func TestTheAgentDenyListBeatsTheProjectsEgress(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(up.Close)
	ta := startAgent(t, func(c *agent.Config) { c.Egress.Deny = []string{"127.0.0.0/8"} })
	ta.mustDeploy(t, "reach", reachProject(t, `"localhost"`))

	port := up.URL[strings.LastIndex(up.URL, ":"):]
	got := callReach(t, ta, "http://localhost"+port)
	if msg, _ := got["error"].(string); !strings.Contains(msg, "not allowed") || !strings.Contains(msg, "egress.deny") {
		t.Fatalf("answer %v, want a refusal naming egress.deny", got)
	}
	if hits.Load() != 0 {
		t.Fatalf("the upstream saw %d requests", hits.Load())
	}
}

// fetch's redirect option, against a real upstream through the agent's
// egress client: "follow" (the default) follows and says so in
// Response.redirected, "manual" answers the 3xx itself, "error" rejects
// with a TypeError naming the host (not the path or query).
func TestFetchRedirectModes(t *testing.T) {
	t.Parallel()
	var finals atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/final" {
			finals.Add(1)
			fmt.Fprint(w, "final")
			return
		}
		w.Header().Set("X-Hop", "first")
		http.Redirect(w, r, "/final", http.StatusFound)
	}))
	t.Cleanup(up.Close)
	ta := startAgent(t, nil)
	ta.mustDeploy(t, "redirects", bundle(t, map[string]string{
		"opsrunner.yaml": `project: redirects
egress: ["127.0.0.1"]
operations:
  - name: get
    script: get.js
    webhook: {path: get}
`,
		"get.js": `async function handle(event) {
	const init = event.body.mode == null ? undefined : {redirect: event.body.mode};
	try {
		const resp = await fetch(event.body.url, init);
		return {status: resp.status, ok: resp.ok, redirected: resp.redirected, url: resp.url,
			location: resp.headers.get("location"), hop: resp.headers.get("x-hop"), text: await resp.text()};
	} catch (e) {
		return {error: e.name + ": " + e.message};
	}
}`,
	}))
	get := func(mode any) map[string]any {
		body, _ := json.Marshal(map[string]any{"url": up.URL + "/start?token=abc", "mode": mode})
		r := ta.do(t, http.MethodPost, "/hooks/redirects/get", "application/json", body, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("webhook (mode %v): %d %s", mode, r.Status, r.Body)
		}
		return r.json(t)
	}
	for _, mode := range []any{nil, "follow"} {
		got := get(mode)
		if got["status"] != 200.0 || got["redirected"] != true || got["url"] != up.URL+"/final" || got["text"] != "final" {
			t.Fatalf("mode %v: %v; want the final response, redirected", mode, got)
		}
	}
	got := get("manual")
	if got["status"] != 302.0 || got["ok"] != false || got["redirected"] != false || got["location"] != "/final" ||
		got["hop"] != "first" || got["url"] != up.URL+"/start?token=abc" {
		t.Fatalf("manual: %v; want the 302 itself", got)
	}
	got = get("error")
	want := `TypeError: fetch to 127.0.0.1: the server answered a redirect (302) and the request's redirect option is "error"`
	if got["error"] != want {
		t.Fatalf("error: %v; want %q", got, want)
	}
	got = get("nowhere")
	if msg, _ := got["error"].(string); msg != `TypeError: fetch: redirect must be "follow", "manual" or "error", not "nowhere"` {
		t.Fatalf("a bad mode: %v", got)
	}
	if n := finals.Load(); n != 2 {
		t.Fatalf("the final URL was fetched %d times, want 2 (manual and error do not follow)", n)
	}
}

func TestASecretSetOnOneAgentIsReadOnAnother(t *testing.T) {
	rds, b := clusterServices(t)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	sameKey := func(c *agent.Config) { c.SecretsKey = base64.StdEncoding.EncodeToString(key) }
	a1 := clusterAgent(t, "a1", rds.URL, 2, b, sameKey)
	a2 := clusterAgent(t, "a2", rds.URL, 2, b, sameKey)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"auth": %q}`, r.Header.Get("Authorization"))
	}))
	t.Cleanup(up.Close)
	a1.mustDeploy(t, "reach", reachProject(t, `"127.0.0.1"`))
	if r := a1.do(t, http.MethodPut, "/api/v1/projects/reach/secrets/API_KEY", "", []byte("set-on-a1"), nil); r.Status != http.StatusNoContent {
		t.Fatalf("set secret: %d %s", r.Status, r.Body)
	}
	waitForProject(t, a2, "reach")
	got := callReach(t, a2, up.URL)
	if fmt.Sprint(got["data"]) != "map[auth:Bearer set-on-a1]" {
		t.Fatalf("a2's run got %v", got)
	}
	// A change needs no redeploy.
	if r := a1.do(t, http.MethodPut, "/api/v1/projects/reach/secrets/API_KEY", "", []byte("changed-on-a1"), nil); r.Status != http.StatusNoContent {
		t.Fatalf("change secret: %d %s", r.Status, r.Body)
	}
	if got := callReach(t, a2, up.URL); fmt.Sprint(got["data"]) != "map[auth:Bearer changed-on-a1]" {
		t.Fatalf("after the change a2's run got %v", got)
	}
}

// waitForProject waits until ta serves the project's webhook.
// waitForProject waits until ta runs project: the project is stored (the
// store is shared, so that alone says nothing of ta) and ta has installed
// it (its answer lists the live operations, which come from what ta has
// loaded).
func waitForProject(t *testing.T, ta *testAgent, project string) {
	t.Helper()
	for range 400 {
		r := ta.do(t, http.MethodGet, "/api/v1/projects/"+project, "", nil, nil)
		var view struct {
			Operations []any `json:"operations"`
		}
		if r.Status == http.StatusOK && json.Unmarshal(r.Body, &view) == nil && len(view.Operations) > 0 {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("project %s never reached agent %s", project, ta.URL)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// waitForRuns waits until n runs of operation have finished.
func waitForRuns(t *testing.T, ta *testAgent, operation string, n int) {
	t.Helper()
	for range 400 {
		var page struct{ Runs []struct{ Status string } }
		r := ta.do(t, http.MethodGet, "/api/v1/runs?operation="+operation, "", nil, nil)
		_ = json.Unmarshal(r.Body, &page)
		done := 0
		for _, run := range page.Runs {
			if run.Status != "running" {
				done++
			}
		}
		if done >= n {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%d runs of %s did not finish", n, operation)
}
