package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/opsrunner/opsrunner/agent"
)

// confineOrders confines project "orders" to its own queues and topics.
func confineOrders(c *agent.Config) {
	c.Projects = map[string]agent.ProjectConfig{"orders": {Destinations: []string{"/queue/orders.*", "/topic/orders.*"}}}
}

// listenerProject is a project with one webhook, "send", whose script
// tries SendMessage to each of event.body.to and returns what happened,
// and one listener on destination.
func listenerProject(t *testing.T, project, destination string) []byte {
	t.Helper()
	return bundle(t, map[string]string{
		"opsrunner.yaml": `project: ` + project + `
operations:
  - name: send
    script: send.js
    webhook: {path: send}
listeners:
  - name: in
    destination: ` + destination + `
    operations: [send]
`,
		"send.js": `function handle(event) {
  return (event.body.to || []).map(d => { try { SendMessage(d, "x"); return "sent " + d } catch (e) { return e.message } });
}`,
	})
}

// A confined project cannot deploy a listener outside its destinations:
// the deploy error names the listener, the destination and what is
// allowed, at the listener's line. Inside them, or unconfined, it deploys.
func TestDeployRefusesAListenerOutsideTheProjectsDestinations(t *testing.T) {
	t.Parallel()
	ta := startAgent(t, confineOrders)
	r := ta.deploy(t, "orders", listenerProject(t, "orders", "/queue/billing.in"))
	if r.Status != http.StatusBadRequest {
		t.Fatalf("deploy: %d %s, want 400", r.Status, r.Body)
	}
	want := `listener \"in\": destination \"/queue/billing.in\" is outside the destinations project \"orders\" is confined to: /queue/orders.*, /topic/orders.* (agent configuration projects.orders.destinations)`
	if !strings.Contains(string(r.Body), want) || !strings.Contains(string(r.Body), `"line":7`) {
		t.Fatalf("deploy answer %s\nwant the listener's line 7 and %s", r.Body, want)
	}
	ta.mustDeploy(t, "orders", listenerProject(t, "orders", "/topic/orders.new"))
	ta.mustDeploy(t, "shop", listenerProject(t, "shop", "/queue/billing.in"))
}

// A confined project's SendMessage outside its destinations throws a
// catchable Error naming the destination and the patterns; other projects
// send anywhere.
func TestSendMessageOutsideTheProjectsDestinationsThrows(t *testing.T) {
	t.Parallel()
	ta := startAgent(t, confineOrders)
	ta.mustDeploy(t, "orders", listenerProject(t, "orders", "/queue/orders.in"))
	ta.mustDeploy(t, "shop", listenerProject(t, "shop", "/queue/shop.in"))
	body := []byte(`{"to": ["/queue/orders.out", "/queue/billing.in"]}`)

	r := ta.do(t, http.MethodPost, "/hooks/orders/send", "application/json", body, nil)
	var got []string
	if err := json.Unmarshal(r.Body, &got); r.Status != http.StatusOK || err != nil {
		t.Fatalf("orders: %d %s", r.Status, r.Body)
	}
	want := []string{"sent /queue/orders.out",
		`SendMessage: project "orders" may not send to "/queue/billing.in": its destinations are confined to /queue/orders.*, /topic/orders.* (agent configuration projects.orders.destinations)`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("orders sent %q, want %q", got, want)
	}

	r = ta.do(t, http.MethodPost, "/hooks/shop/send", "application/json", body, nil)
	if want := `["sent /queue/orders.out","sent /queue/billing.in"]`; r.Status != http.StatusOK || string(r.Body) != want {
		t.Fatalf("shop: %d %s, want %s", r.Status, r.Body, want)
	}
}

// lockedBuffer is a log destination tests can read while the agent writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A version deployed before the agent confined its project still loads at
// start, but its listener outside the confinement is not started (an
// error in the log, a status saying why), and a rollback to such a
// version is refused.
func TestAConfinementSetLaterStopsTheListenersOutsideIt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	before := startAgent(t, func(c *agent.Config) { c.DataDir = dir })
	before.mustDeploy(t, "orders", listenerProject(t, "orders", "/queue/billing.in"))
	before.stop()

	var logs lockedBuffer
	ta := startLoggedAgent(t, func(c *agent.Config) { c.DataDir = dir; confineOrders(c) }, slog.New(slog.NewTextHandler(&logs, nil)))
	ls, err := ta.Listeners(context.Background(), "")
	if err != nil || len(ls) != 1 {
		t.Fatalf("listeners %+v, %v", ls, err)
	}
	if ls[0].Status != "on (outside the project's destinations)" {
		t.Fatalf("listener status %q, want it off for being outside the destinations", ls[0].Status)
	}
	if l := logs.String(); !strings.Contains(l, "listener not started") || !strings.Contains(l, `destination \"/queue/billing.in\" is outside`) {
		t.Fatalf("log:\n%s\nwant the listener not started, with why", l)
	}
	// The project itself is live: its webhook runs.
	if r := ta.do(t, http.MethodPost, "/hooks/orders/send", "application/json", []byte(`{}`), nil); r.Status != http.StatusOK {
		t.Fatalf("webhook of the loaded project: %d %s", r.Status, r.Body)
	}

	ta.mustDeploy(t, "orders", listenerProject(t, "orders", "/queue/orders.in"))
	r := ta.do(t, http.MethodPost, "/api/v1/projects/orders/rollback", "application/json", []byte(`{"version":1}`), nil)
	if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), `rollback orders to version 1: listener \"in\": destination \"/queue/billing.in\" is outside`) {
		t.Fatalf("rollback: %d %s, want 400 naming the listener", r.Status, r.Body)
	}
}

// Another project's operation runs only when that project exports it to
// the caller; the refusal names both projects and the export to add.
func TestRunOperationAcrossProjectsFollowsExports(t *testing.T) {
	t.Parallel()
	ta := startAgent(t, nil)
	ta.mustDeploy(t, "billing", bundle(t, map[string]string{
		"opsrunner.yaml": "project: billing\noperations:\n  - name: Charge\n    script: charge.js\nexports:\n  - {operation: Charge, to: [shop]}\n",
		"charge.js":      `function handle(e) { return "charged " + e.amount }`,
	}))
	caller := func(project string) []byte {
		return bundle(t, map[string]string{
			"opsrunner.yaml": "project: " + project + "\noperations:\n  - name: buy\n    script: buy.js\n    webhook: {path: buy}\n",
			"buy.js": `function handle() {
  try { return RunOperation("billing/Charge", true, {amount: 3}) } catch (e) { return e.message }
}`,
		})
	}
	ta.mustDeploy(t, "shop", caller("shop"))
	ta.mustDeploy(t, "web", caller("web"))
	for project, want := range map[string]string{
		"shop": `"charged 3"`,
		"web":  `"RunOperation: project \"billing\" does not export operation \"Charge\" to project \"web\": add {operation: Charge, to: [web]} to exports in billing's opsrunner.yaml"`,
	} {
		r := ta.do(t, http.MethodPost, "/hooks/"+project+"/buy", "application/json", []byte(`{}`), nil)
		if r.Status != http.StatusOK || string(r.Body) != want {
			t.Errorf("%s: %d %s, want %s", project, r.Status, r.Body, want)
		}
	}
}

// A webhook with tokenSecret runs for the right bearer token only, on a
// real agent with the secret set over the API.
func TestWebhookTokenSecretOnAnAgent(t *testing.T) {
	t.Parallel()
	ta := startAgent(t, nil)
	ta.mustDeploy(t, "hooks", bundle(t, map[string]string{
		"opsrunner.yaml": "project: hooks\noperations:\n  - name: ping\n    script: ping.js\n    webhook: {path: ping, tokenSecret: PING_TOKEN}\n",
		"ping.js":        `function handle() { return "pong" }`,
	}))
	call := func(auth string) response {
		var h map[string]string
		if auth != "" {
			h = map[string]string{"Authorization": auth}
		}
		return ta.do(t, http.MethodPost, "/hooks/hooks/ping", "application/json", []byte(`{}`), h)
	}
	if r := call("Bearer s3cret-ping"); r.Status != http.StatusServiceUnavailable || !strings.Contains(string(r.Body), "PING_TOKEN is not set") {
		t.Fatalf("before the secret is set: %d %s, want 503", r.Status, r.Body)
	}
	if r := ta.do(t, http.MethodPut, "/api/v1/projects/hooks/secrets/PING_TOKEN", "text/plain", []byte("s3cret-ping"), nil); r.Status != http.StatusNoContent {
		t.Fatalf("set secret: %d %s", r.Status, r.Body)
	}
	for _, tt := range []struct {
		auth   string
		status int
	}{{"", 401}, {"Bearer wrong", 401}, {"Bearer s3cret-ping", 200}} {
		if r := call(tt.auth); r.Status != tt.status {
			t.Errorf("Authorization %q: %d %s, want %d", tt.auth, r.Status, r.Body, tt.status)
		}
	}
	if runs := ta.runs(t, "?project=hooks"); len(runs) != 1 {
		t.Fatalf("%d runs, want only the authorised one", len(runs))
	}
}
