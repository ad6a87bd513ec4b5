package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/store"
	"github.com/redis/go-redis/v9"
)

// Chain variables travel with every queued run: a callee started by
// RunOperation(ref, false) sees the variables its caller had set, whether
// it runs on the caller's agent (the local queue) or on another one (the
// cluster's queue in Redis).

const jobVarsManifest = `project: jv
operations:
  - name: caller
    script: caller.js
    timeout: 30s
    webhook: {path: caller}
  - name: callee
    script: callee.js
    timeout: 10s
  - name: ping
    script: ping.js
    webhook: {path: ping}
`

var jobVarsFiles = map[string]string{
	"opsrunner.yaml": jobVarsManifest,
	// Set in the order x, o: the callee sees them in sorted order (o, x),
	// as queued runs always have.
	"caller.js": `function handle(event) {
  Set("x", 42);
  Set("o", {a: [1, 2]});
  const ids = [];
  for (let i = 0; i < event.body.n; i++) ids.push(RunOperation("callee", false));
  return ids;
}
`,
	// Busy for a while, so that the queue's runs spread over the agents.
	"callee.js": `function handle() {
  const until = Date.now() + 30;
  while (Date.now() < until) {}
  return {x: Get("x"), o: Get("o"), keys: Object.keys($vars)};
}
`,
	"ping.js": "function handle() { return 'pong' }\n",
}

// wantCalleeResult is what every callee returns when it saw the caller's
// variables.
const wantCalleeResult = `{"x":42,"o":{"a":[1,2]},"keys":["o","x"]}`

const queuedCallees = 20

// callCallees runs the caller through ta's webhook and returns the ids of
// the callee runs it queued.
func callCallees(t *testing.T, ta *testAgent) []string {
	t.Helper()
	body := fmt.Appendf(nil, `{"n":%d}`, queuedCallees)
	r := ta.do(t, http.MethodPost, "/hooks/jv/caller", "application/json", body, nil)
	var ids []string
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &ids) != nil || len(ids) != queuedCallees {
		t.Fatalf("caller: %d %s", r.Status, r.Body)
	}
	return ids
}

// finishedRun waits for run id to finish and returns it.
func finishedRun(t *testing.T, ta *testAgent, id string) store.Run {
	t.Helper()
	var run store.Run
	waitFor(t, 30*time.Second, func() bool {
		r := ta.do(t, http.MethodGet, "/api/v1/runs/"+id, "", nil, nil)
		run = store.Run{}
		return r.Status == http.StatusOK && json.Unmarshal(r.Body, &run) == nil && run.Status != store.StatusRunning
	})
	return run
}

// checkCallees waits for every callee run and checks that each saw the
// caller's variables; it returns how many runs each agent ran.
func checkCallees(t *testing.T, ta *testAgent, ids []string) map[string]int {
	t.Helper()
	perAgent := map[string]int{}
	for _, id := range ids {
		run := finishedRun(t, ta, id)
		perAgent[run.Agent]++
		if run.Status != store.StatusSucceeded || string(run.Result) != wantCalleeResult {
			t.Errorf("callee %s on %s: %s %q, result %s; want %s", id, run.Agent, run.Status, run.Error, run.Result, wantCalleeResult)
		}
	}
	return perAgent
}

func TestQueuedRunsKeepChainVariablesOnOneAgent(t *testing.T) {
	ta := startAgent(t, nil)
	ta.mustDeploy(t, "jv", bundle(t, jobVarsFiles))
	ids := callCallees(t, ta)
	checkCallees(t, ta, ids)
}

func TestQueuedRunsKeepChainVariablesAcrossAgents(t *testing.T) {
	rds, b := clusterServices(t)
	// One worker on the caller's agent: while the caller runs, the other
	// agent takes the queued runs.
	a := clusterAgent(t, "jv-a", rds.URL, 2, b, func(c *agent.Config) { c.Workers = 1 })
	other := clusterAgent(t, "jv-b", rds.URL, 2, b, func(c *agent.Config) { c.Workers = 2 })
	for _, ta := range []*testAgent{a, other} { // each pulls queued runs only once it sees the quorum
		waitFor(t, 10*time.Second, func() bool { return ta.do(t, http.MethodGet, "/readyz", "", nil, nil).Status == http.StatusOK })
	}
	a.mustDeploy(t, "jv", bundle(t, jobVarsFiles))
	waitFor(t, 5*time.Second, func() bool {
		return other.do(t, http.MethodPost, "/hooks/jv/ping", "", nil, nil).Status == http.StatusOK
	})

	t.Run("every callee sees the caller's variables, on either agent", func(t *testing.T) {
		perAgent := checkCallees(t, a, callCallees(t, a))
		t.Logf("callees per agent: %v", perAgent)
		if perAgent["jv-b"] == 0 {
			t.Errorf("no callee ran on the other agent: %v", perAgent)
		}
	})

	t.Run("an async webhook still runs through the queue", func(t *testing.T) {
		r := other.do(t, http.MethodPost, "/hooks/jv/ping", "", nil, map[string]string{"Prefer": "respond-async"})
		if r.Status != http.StatusAccepted {
			t.Fatalf("async webhook: %d %s", r.Status, r.Body)
		}
		run := finishedRun(t, a, strings.TrimPrefix(r.Header.Get("Location"), "/api/v1/runs/"))
		if run.Status != store.StatusSucceeded || string(run.Result) != `"pong"` {
			t.Fatalf("async webhook run: %s %q %s", run.Status, run.Error, run.Result)
		}
	})

	t.Run("a job queued without variables still runs", func(t *testing.T) {
		opt, err := redis.ParseURL(rds.URL)
		if err != nil {
			t.Fatal(err)
		}
		c := redis.NewClient(opt)
		defer c.Close()
		id := ulid.Make().String()
		old := fmt.Sprintf(`{"runId":%q,"project":"jv","operation":"callee","trigger":"operation","event":{}}`, id)
		if err := c.LPush(context.Background(), "opsrunner:jobs", old).Err(); err != nil {
			t.Fatal(err)
		}
		run := finishedRun(t, a, id)
		if run.Status != store.StatusSucceeded || string(run.Result) != `{"keys":[]}` {
			t.Fatalf("old job: %s %q %s", run.Status, run.Error, run.Result)
		}
	})
}
