package agent_test

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/store"
)

// healthFiles is a project with a runaway webhook that its time limit ends,
// and a quick one.
var healthFiles = map[string]string{
	"opsrunner.yaml": `project: health
operations:
  - name: spin
    script: spin.js
    timeout: 3s
    webhook: {path: spin}
`,
	"spin.js": "function handle() { while (true) {} }\n",
}

// waitUntil polls cond every 10 ms until it holds or within passes; it fails
// the test naming what it waited for.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (ta *testAgent) runs(t *testing.T, query string) []store.Run {
	t.Helper()
	r := ta.do(t, http.MethodGet, "/api/v1/runs"+query, "", nil, nil)
	var page struct{ Runs []store.Run }
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &page) != nil {
		t.Fatalf("GET runs%s: %d %s", query, r.Status, r.Body)
	}
	return page.Runs
}

// memberCounts is what the health tests read of a member in GET
// /api/v1/cluster/members.
type memberCounts struct {
	ID        string
	Running   int
	StuckRuns int
}

// member is agent id's entry in ta's members view.
func (ta *testAgent) member(t *testing.T, id string) (memberCounts, bool) {
	t.Helper()
	r := ta.do(t, http.MethodGet, "/api/v1/cluster/members", "", nil, nil)
	var view struct{ Members []memberCounts }
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &view) != nil {
		t.Fatalf("GET members: %d %s", r.Status, r.Body)
	}
	for _, m := range view.Members {
		if m.ID == id {
			return m, true
		}
	}
	return memberCounts{}, false
}

// A synchronous webhook run shows as running from the moment it starts, in
// the filtered and unfiltered lists, by id, and in the agent's member
// record; once it ends it no longer does. While its one worker is busy
// within the time limit, the agent stays ready.
func TestWebhookRunInProgressIsListedAsRunning(t *testing.T) {
	ta := startAgent(t, func(c *agent.Config) {
		c.Workers = 1
		c.StuckGrace = agent.Duration(50 * time.Millisecond)
	})
	ta.mustDeploy(t, "health", bundle(t, healthFiles))

	answered := make(chan int, 1)
	go func() { // owner: this test; ends when the run's 3s time limit does
		resp, err := http.Post(ta.URL+"/hooks/health/spin", "application/json", nil)
		if err != nil {
			answered <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		answered <- resp.StatusCode
	}()

	var run store.Run
	waitUntil(t, 2*time.Second, "the spinning webhook run listed in runs?status=running", func() bool {
		for _, r := range ta.runs(t, "?status=running") {
			if r.Operation == "spin" {
				run = r
				return true
			}
		}
		return false
	})
	if run.Trigger != "webhook" || run.Agent != "test-agent" || run.StartedAt.IsZero() || run.FinishedAt != nil {
		t.Errorf("running run: %+v", run)
	}
	if all := ta.runs(t, ""); len(all) == 0 || all[0].ID != run.ID || all[0].Status != store.StatusRunning {
		t.Errorf("unfiltered list: %+v, want %s running first", all, run.ID)
	}
	if got := ta.runs(t, "?status=succeeded"); len(got) != 0 {
		t.Errorf("runs?status=succeeded lists %+v", got)
	}
	r := ta.do(t, http.MethodGet, "/api/v1/runs/"+run.ID, "", nil, nil)
	if r.Status != http.StatusOK || r.json(t)["status"] != store.StatusRunning {
		t.Errorf("GET runs/%s: %d %s", run.ID, r.Status, r.Body)
	}
	waitUntil(t, 2*time.Second, "members showing the run in progress", func() bool {
		m, ok := ta.member(t, "test-agent")
		return ok && m.Running == 1
	})
	if m, _ := ta.member(t, "test-agent"); m.StuckRuns != 0 {
		t.Errorf("members: %+v, want no stuck run within the time limit", m)
	}
	if r := ta.do(t, http.MethodGet, "/readyz", "", nil, nil); r.Status != http.StatusOK {
		t.Errorf("readyz with its worker busy within the time limit: %d %s", r.Status, r.Body)
	}

	select {
	case <-answered:
	case <-time.After(30 * time.Second):
		t.Fatal("the spinning webhook did not answer within 30s")
	}
	if got := ta.runs(t, "?status=running"); len(got) != 0 {
		t.Errorf("runs?status=running after the run ended: %+v", got)
	}
	r = ta.do(t, http.MethodGet, "/api/v1/runs/"+run.ID, "", nil, nil)
	if r.Status != http.StatusOK || r.json(t)["status"] != store.StatusTimedOut {
		t.Errorf("GET runs/%s after it ended: %d %s", run.ID, r.Status, r.Body)
	}
	if m, _ := ta.member(t, "test-agent"); m.Running != 0 {
		t.Errorf("members after the run ended: %+v", m)
	}
}

// In a cluster, a run going on for more than about a second is listed as
// running by every agent, and the members view shows it on its agent.
func TestRunInProgressIsListedByEveryAgentOfACluster(t *testing.T) {
	rds, b := clusterServices(t)
	a := clusterAgent(t, "agent-a", rds.URL, 2, b)
	bAgent := clusterAgent(t, "agent-b", rds.URL, 2, b)
	a.mustDeploy(t, "health", bundle(t, healthFiles))
	waitUntil(t, 10*time.Second, "agent-b ready with the project deployed on agent-a", func() bool {
		_, ok := bAgent.Project("health")
		return ok && bAgent.do(t, http.MethodGet, "/readyz", "", nil, nil).Status == http.StatusOK
	})

	answered := make(chan struct{})
	go func() { // owner: this test; ends when the run's 3s time limit does
		defer close(answered)
		if resp, err := http.Post(bAgent.URL+"/hooks/health/spin", "application/json", nil); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	waitUntil(t, 2500*time.Millisecond, "agent-a listing agent-b's run as running", func() bool {
		for _, r := range a.runs(t, "?status=running") {
			if r.Operation == "spin" && r.Agent == "agent-b" {
				return true
			}
		}
		return false
	})
	waitUntil(t, 2*time.Second, "agent-a's members showing agent-b's run in progress", func() bool {
		m, ok := a.member(t, "agent-b")
		return ok && m.Running == 1 && m.StuckRuns == 0
	})
	select {
	case <-answered:
	case <-time.After(30 * time.Second):
		t.Fatal("the spinning webhook did not answer within 30s")
	}
	waitUntil(t, 2*time.Second, "agent-a no longer listing the run as running", func() bool {
		return len(a.runs(t, "?status=running&operation=spin")) == 0
	})
}
