package agent_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestQuorumPausesListenersAndReservationFailsOver(t *testing.T) {
	rds, b := clusterServices(t)
	prefix := fmt.Sprintf("q%d", rand.Uint32())
	files := map[string]string{
		"opsrunner.yaml": strings.ReplaceAll(`project: q
operations:
  - name: op
    script: op.js
listeners:
  - name: res
    destination: /queue/PFX.res
    placement: {reservation: [agent-x, agent-b, agent-a]}
    operations: [op]
`, "PFX", prefix),
		"op.js": "function handle(event) { return event.body.id; }\n",
	}
	conn, err := b.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Disconnect()

	// Three expected agents: quorum needs two.
	a := clusterAgent(t, "agent-a", rds.URL, 3, b)
	a.mustDeploy(t, "q", bundle(t, files))
	sendJSON(t, conn, "/queue/"+prefix+".res", `{"id":"m1"}`)
	time.Sleep(2 * time.Second)
	if n := len(a.runsWhere(t, "operation=op")); n != 0 {
		t.Fatalf("below quorum a listener ran %d operations", n)
	}
	if r := a.do(t, "GET", "/readyz", "", nil, nil); r.Status != 503 || !strings.Contains(string(r.Body), "quorum") {
		t.Fatalf("readyz below quorum: %d %s", r.Status, r.Body)
	}

	bAgent := clusterAgent(t, "agent-b", rds.URL, 3, b)
	waitFor(t, 20*time.Second, func() bool { return len(a.runsWhere(t, "operation=op&status=succeeded")) == 1 })
	runs := a.runsWhere(t, "operation=op")
	if ag := agentOf(t, a, runs[0].ID); ag != "agent-b" {
		t.Fatalf("reservation [agent-x, agent-b, agent-a]: ran on %s, want agent-b (first live)", ag)
	}

	// agent-b dies; with a third agent the cluster keeps quorum and agent-a
	// takes the reservation over.
	c := clusterAgent(t, "agent-c", rds.URL, 3, b)
	_ = c
	bAgent.stop()
	start := time.Now()
	sendJSON(t, conn, "/queue/"+prefix+".res", `{"id":"m2"}`)
	waitFor(t, 15*time.Second, func() bool { return len(a.runsWhere(t, "operation=op&status=succeeded")) == 2 })
	t.Logf("reservation takeover: %s", time.Since(start).Round(10*time.Millisecond))
	runs = a.runsWhere(t, "operation=op")
	if ag := agentOf(t, a, runs[0].ID); ag != "agent-a" {
		t.Fatalf("after agent-b stopped the reservation ran on %s, want agent-a", ag)
	}
}
