package agent_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/internal/testenv"
)

// clusterServices starts what a cluster test needs: a private Redis (stopped
// after the test's agents, whose cleanups run first) and the shared
// standalone broker. It skips in -short mode.
func clusterServices(t *testing.T) (*testenv.RedisServer, *testenv.Broker) {
	t.Helper()
	if testing.Short() {
		t.Skip("cluster test skipped in -short mode")
	}
	rds, err := testenv.StartRedis()
	if err != nil {
		testenv.Unavailable(t, "redis-server", err)
	}
	t.Cleanup(rds.Stop) // registered before the agents: runs after they have stopped
	return rds, testenv.Embedded(t)
}

// clusterAgent starts an agent in the cluster on redisURL, using the shared
// broker b; adjust, if given, changes the configuration further.
func clusterAgent(t *testing.T, id, redisURL string, size int, b *testenv.Broker, adjust ...func(*agent.Config)) *testAgent {
	t.Helper()
	return startAgent(t, func(c *agent.Config) {
		c.AgentID = id
		c.RedisURL = redisURL
		c.ClusterSize = size
		c.BrokerURL = "stomp://" + b.Addr
		c.Connections = map[string]agent.Connection{"default": {URL: "stomp://" + b.Addr}}
		for _, f := range adjust {
			f(c)
		}
	})
}

type membersView struct {
	Leader string
	Quorum struct {
		Size, Required, Live int
		OK                   bool
	}
	Members []struct {
		ID       string
		Leader   bool
		InFlight int
		Capacity int
	}
}

// selfID is the id of the agent's own entry in its members view, once its
// first heartbeat has put it there.
func (ta *testAgent) selfID(t *testing.T) string {
	t.Helper()
	var m membersView
	waitFor(t, 10*time.Second, func() bool {
		m = ta.members(t)
		return len(m.Members) > 0
	})
	return m.Members[0].ID
}

func (ta *testAgent) members(t *testing.T) membersView {
	t.Helper()
	var m membersView
	r := ta.do(t, "GET", "/api/v1/cluster/members", "", nil, nil)
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("members: %v %s", err, r.Body)
	}
	return m
}

const clusterManifest = `project: cl
operations:
  - name: work
    script: work.js
    timeout: 5s
    webhook: {path: work}
  - name: pinned op
    script: work.js
    timeout: 5s
  - name: topic op
    script: topic.js
    timeout: 5s
listeners:
  - name: once
    destination: /topic/PFX.news
    ackTimeout: 20s
    operations: [topic op]
  - name: each
    destination: /topic/PFX.news
    fanout: each
    ackTimeout: 20s
    operations: [topic op]
  - name: in
    destination: /queue/PFX.in
    consumers: 2
    ackTimeout: 20s
    operations: [work]
    redelivery: {initialDelay: 50ms}
  - name: pinned
    destination: /queue/PFX.pinned
    placement: {pinned: [agent-b]}
    ackTimeout: 20s
    operations: [pinned op]
`

const clusterScript = `function handle(event, ctx) {
  if (ctx.trigger === "listener") {
    SendMessage("/queue/PFX.effects", {id: event.body.id});
  }
  return {agent: "x", id: event.body && event.body.id};
}
`

func TestClusterOverRedis(t *testing.T) {
	rds, b := clusterServices(t)
	prefix := fmt.Sprintf("c%d", rand.Uint32())

	a := clusterAgent(t, "agent-a", rds.URL, 2, b)
	waitFor(t, 10*time.Second, func() bool { return a.members(t).Leader == "agent-a" })
	if r := a.do(t, "GET", "/readyz", "", nil, nil); r.Status != 503 {
		t.Fatalf("one of two agents live must not be ready (quorum 2): %d %s", r.Status, r.Body)
	}
	bAgent := clusterAgent(t, "agent-b", rds.URL, 2, b)
	waitFor(t, 10*time.Second, func() bool {
		m := a.members(t)
		return m.Quorum.OK && len(m.Members) == 2
	})
	waitFor(t, 5*time.Second, func() bool { return bAgent.do(t, "GET", "/readyz", "", nil, nil).Status == 200 })

	t.Run("a deploy on one agent reaches the others within a second", func(t *testing.T) {
		files := map[string]string{
			"opsrunner.yaml": strings.ReplaceAll(clusterManifest, "PFX", prefix),
			"work.js":        strings.ReplaceAll(clusterScript, "PFX", prefix),
			"topic.js":       "function handle(event) { return event.body.id; }\n",
		}
		a.mustDeploy(t, "cl", bundle(t, files))
		waitFor(t, time.Second, func() bool {
			return bAgent.do(t, "POST", "/hooks/cl/work", "application/json", []byte(`{"id":1}`), nil).Status == 200
		})
	})

	t.Run("async runs go through the cluster queue", func(t *testing.T) {
		r := bAgent.do(t, "POST", "/hooks/cl/work", "application/json", []byte(`{"id":2}`), map[string]string{"Prefer": "respond-async"})
		if r.Status != 202 {
			t.Fatalf("async: %d %s", r.Status, r.Body)
		}
		loc := r.Header.Get("Location")
		waitFor(t, 10*time.Second, func() bool {
			return strings.Contains(string(a.do(t, "GET", loc, "", nil, nil).Body), `"status":"succeeded"`)
		})
	})

	conn, err := b.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Disconnect()

	t.Run("each message is processed once across the cluster", func(t *testing.T) {
		const n = 200
		for i := 0; i < n; i++ {
			sendJSON(t, conn, "/queue/"+prefix+".in", fmt.Sprintf(`{"id":%d}`, i))
		}
		waitFor(t, 60*time.Second, func() bool {
			return len(a.runsWhere(t, "operation=work&status=succeeded&limit=1000")) >= n+2
		})
		effects := drain(t, conn, "/queue/"+prefix+".effects", 2*time.Second)
		seen := map[string]int{}
		for _, m := range effects {
			seen[string(m.Body)]++
		}
		if len(effects) != n || len(seen) != n {
			t.Fatalf("effects: %d messages, %d distinct, want %d each", len(effects), len(seen), n)
		}
		perAgent := map[string]int{}
		for _, r := range a.runsWhere(t, "operation=work&limit=1000") {
			if r.Listener != "" {
				perAgent[agentOf(t, a, r.ID)]++
			}
		}
		t.Logf("runs per agent: %v", perAgent)
		if len(perAgent) != 2 {
			t.Errorf("both agents should have consumed: %v", perAgent)
		}
	})

	t.Run("a topic copy runs once in the cluster with fanout once, on every agent with fanout each", func(t *testing.T) {
		time.Sleep(time.Second) // topic subscriptions are live
		const n = 10
		for i := 0; i < n; i++ {
			sendJSON(t, conn, "/topic/"+prefix+".news", fmt.Sprintf(`{"id":"t%d"}`, i))
		}
		// Copies skipped as duplicates are recorded too (outcome
		// skipped_duplicate); only committed runs count.
		count := func(listener string) int {
			c := 0
			for _, r := range a.runsWhere(t, "operation=topic+op&limit=1000") {
				if r.Listener == listener && r.Outcome == "committed" {
					c++
				}
			}
			return c
		}
		waitFor(t, 30*time.Second, func() bool { return count("cl/once") >= n && count("cl/each") >= 2*n })
		time.Sleep(time.Second)
		if o, e := count("cl/once"), count("cl/each"); o != n || e != 2*n {

			t.Fatalf("fanout once ran %d times, fanout each %d times; want %d and %d", o, e, n, 2*n)
		}
	})

	t.Run("a pinned listener runs only on its agent", func(t *testing.T) {
		for i := 0; i < 5; i++ {
			sendJSON(t, conn, "/queue/"+prefix+".pinned", fmt.Sprintf(`{"id":"p%d"}`, i))
		}
		waitFor(t, 20*time.Second, func() bool {
			return len(a.runsWhere(t, "operation=pinned+op&status=succeeded")) == 5
		})
		for _, r := range a.runsWhere(t, "operation=pinned+op") {
			if ag := agentOf(t, a, r.ID); ag != "agent-b" {
				t.Errorf("pinned run on %s", ag)
			}
		}
	})

	t.Run("a toggle on one agent reaches the others", func(t *testing.T) {
		if r := a.do(t, "PUT", "/api/v1/listeners/cl%2Fin/state", "application/json", []byte(`{"enabled":false}`), nil); r.Status != 200 {
			t.Fatalf("toggle: %d %s", r.Status, r.Body)
		}
		waitFor(t, time.Second, func() bool {
			return strings.Contains(string(bAgent.do(t, "GET", "/api/v1/listeners?q=cl/in", "", nil, nil).Body), `"enabled":false`)
		})
	})

	t.Run("Redis down: agents stop listening and say so; back: they resume", func(t *testing.T) {
		rds.Stop()
		waitFor(t, 10*time.Second, func() bool { return a.do(t, "GET", "/readyz", "", nil, nil).Status == 503 })
		if m := a.members(t); m.Quorum.OK {
			t.Errorf("members view claims quorum with Redis down: %+v", m)
		}
		if err := rds.Start(); err != nil {
			t.Fatal(err)
		}
		// Redis restarted empty: the agents' records come back with heartbeats.
		waitFor(t, 15*time.Second, func() bool { return a.do(t, "GET", "/readyz", "", nil, nil).Status == 200 })
	})

	t.Run("the leader's death hands leadership over within 5s", func(t *testing.T) {
		leader := a.members(t).Leader
		var survivor *testAgent
		switch leader {
		case "agent-a":
			a.stop()
			survivor = bAgent
		case "agent-b":
			bAgent.stop()
			survivor = a
		default:
			t.Fatalf("no leader: %q", leader)
		}
		start := time.Now()
		waitFor(t, 8*time.Second, func() bool { m := survivor.members(t); return m.Leader != "" && m.Leader != leader })
		t.Logf("leader failover after a clean stop: %s", time.Since(start).Round(10*time.Millisecond))
	})
}

// agentOf returns the agent that ran a run.
func agentOf(t *testing.T, ta *testAgent, id string) string {
	t.Helper()
	var r struct{ Agent string }
	_ = json.Unmarshal(ta.do(t, "GET", "/api/v1/runs/"+id, "", nil, nil).Body, &r)
	return r.Agent
}
