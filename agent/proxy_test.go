package agent_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/agent"
)

func TestBusyAgentProxiesWebhooksToAFreeOne(t *testing.T) {
	rds, b := clusterServices(t)
	oneWorker := func(id string) *testAgent {
		return clusterAgent(t, id, rds.URL, 2, b, func(c *agent.Config) { c.Workers = 1 })
	}
	a, other := oneWorker("busy-a"), oneWorker("free-b")
	files := map[string]string{
		"opsrunner.yaml": "project: px\noperations:\n  - name: slow\n    script: slow.js\n    webhook: {path: slow}\n  - name: fast\n    script: fast.js\n    webhook: {path: fast}\n",
		"slow.js":        "function handle() { var t = Date.now(); while (Date.now() - t < 4000) {} return 1; }\n",
		"fast.js":        "function handle() { return 2; }\n",
	}
	a.mustDeploy(t, "px", bundle(t, files))
	waitFor(t, 10*time.Second, func() bool { return len(a.members(t).Members) == 2 })
	waitFor(t, 15*time.Second, func() bool { return other.do(t, "POST", "/hooks/px/fast", "", nil, nil).Status == 200 })

	done := make(chan struct{})
	go func() {
		defer close(done)
		a.do(t, "POST", "/hooks/px/slow", "", nil, nil) // holds busy-a's only worker
	}()
	// Both agents' heartbeats (every second) must show busy-a busy.
	waitFor(t, 3*time.Second, func() bool {
		for _, m := range other.members(t).Members {
			if m.ID == "busy-a" && m.InFlight == 1 {
				return true
			}
		}
		return false
	})
	time.Sleep(1100 * time.Millisecond)
	r := a.do(t, "POST", "/hooks/px/fast", "", nil, nil)
	if r.Status != 200 {
		t.Fatalf("proxied webhook: %d %s", r.Status, r.Body)
	}
	var run struct{ Agent string }
	_ = json.Unmarshal(a.do(t, "GET", "/api/v1/runs/"+r.Header.Get("X-Opsrunner-Run"), "", nil, nil).Body, &run)
	if run.Agent != "free-b" {
		t.Fatalf("a webhook sent to a busy agent ran on %q, want free-b", run.Agent)
	}
	<-done
}
