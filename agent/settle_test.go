package agent_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// settleProject binds one listener to two operations: A always succeeds,
// B fails on its first try (or always, for a body with "always": true).
// Each sends an effect naming itself and the message.
func settleProject(prefix string) map[string]string {
	manifest := `project: settle
operations:
  - name: A
    script: a.js
    timeout: 5s
  - name: B
    script: b.js
    timeout: 5s
listeners:
  - name: in
    destination: /queue/PFX.in
    operations: [A, B]
    redelivery: {maxRedeliveries: 2, initialDelay: 20ms, multiplier: 2, maxDelay: 100ms}
`
	return map[string]string{
		"opsrunner.yaml": strings.ReplaceAll(manifest, "PFX", prefix),
		"a.js":           "function handle(event) { SendMessage('/queue/" + prefix + ".effects', 'A:' + event.body.n); }\n",
		"b.js": "function handle(event) {\n" +
			"  SendMessage('/queue/" + prefix + ".effects', 'B:' + event.body.n);\n" +
			"  if (event.body.always || event.deliveryCount == 1) throw new Error('B fails');\n}\n",
	}
}

// A listener's operations settle each once: with [A, B] and B failing its
// first try, A runs once and B twice per message; A's sends commit with
// the original's ACK and B's with its retry copy's, once each. A dead
// letter names the operations that failed, and its replay keeps the
// original message id and runs only those.
func TestEachOperationSettlesOnce(t *testing.T) {
	for _, bc := range brokerCases() {
		t.Run(bc.kind, func(t *testing.T) {
			ta, dial := bc.start(t)
			prefix := fmt.Sprintf("s%d", rand.Uint32())
			ta.mustDeploy(t, "settle", bundle(t, settleProject(prefix)))
			waitFor(t, 30*time.Second, func() bool {
				r := ta.do(t, "GET", "/api/v1/listeners?q=settle", "", nil, nil)
				return strings.Contains(string(r.Body), `"status":"on"`)
			})
			conn := dial(t)
			const n = 30
			for i := range n {
				sendJSON(t, conn, "/queue/"+prefix+".in", fmt.Sprintf(`{"n":%d}`, i))
			}
			waitFor(t, 60*time.Second, func() bool {
				committed := 0
				for _, r := range ta.runsWhere(t, "listener=settle/in") {
					if r.Outcome == "committed" {
						committed++
					}
				}
				return committed >= 2*n
			})
			runs := ta.runsWhere(t, "listener=settle/in")
			count := map[string]int{}
			for _, r := range runs {
				count[r.Operation+" "+r.Outcome]++
			}
			want := map[string]int{"A committed": n, "B rolled_back": n, "B committed": n}
			for k, v := range want {
				if count[k] != v {
					t.Errorf("runs %q = %d, want %d (all: %v)", k, count[k], v, count)
				}
			}
			if len(runs) != 3*n {
				t.Errorf("%d runs, want %d: %v", len(runs), 3*n, count)
			}
			effects := map[string]int{}
			for _, m := range drain(t, conn, "/queue/"+prefix+".effects", 2*time.Second) {
				effects[string(m.Body)]++
			}
			for i := range n {
				for _, op := range []string{"A", "B"} {
					if k := fmt.Sprintf("%s:%d", op, i); effects[k] != 1 {
						t.Errorf("effect %s appeared %d times, want once", k, effects[k])
					}
				}
			}

			t.Run("a dead letter names the failed operations; its replay keeps the id and runs only them", func(t *testing.T) {
				sendJSON(t, conn, "/queue/"+prefix+".in", `{"n":"dl","always":true}`)
				var dl map[string]any
				waitFor(t, 30*time.Second, func() bool {
					r := ta.do(t, "GET", "/api/v1/deadletters?listener=settle/in", "", nil, nil)
					var page struct{ DeadLetters []map[string]any }
					_ = json.Unmarshal(r.Body, &page)
					if len(page.DeadLetters) == 1 {
						dl = page.DeadLetters[0]
					}
					return dl != nil
				})
				id := fmt.Sprint(dl["messageId"])
				if h, _ := dl["headers"].(map[string]any); h["opsrunner-operations"] != "B" {
					t.Errorf("dead letter headers %v, want opsrunner-operations: B", h)
				}
				if r := ta.do(t, "POST", "/api/v1/deadletters/"+fmt.Sprint(dl["id"])+"/replay", "", nil, nil); r.Status/100 != 2 {
					t.Fatalf("replay: %d %s", r.Status, r.Body)
				}
				// B fails again: three more attempts, dead-lettered again.
				waitFor(t, 30*time.Second, func() bool {
					dead := 0
					for _, r := range ta.runsWhere(t, "messageId="+id) {
						if r.Outcome == "dead_lettered" {
							dead++
						}
					}
					return dead == 2
				})
				count := map[string]int{}
				for _, r := range ta.runsWhere(t, "messageId="+id) {
					count[r.Operation]++
				}
				if count["A"] != 1 || count["B"] != 6 {
					t.Errorf("runs of message %s by operation = %v, want A 1, B 6", id, count)
				}
			})
		})
	}
}

// explicitProject binds an explicit-mode listener to A, which commits its
// share, and B, which rolls its share back on the first delivery.
func explicitProject(prefix string) map[string]string {
	manifest := `project: explicit
operations:
  - name: A
    script: a.js
  - name: B
    script: b.js
listeners:
  - name: in
    destination: /queue/PFX.in
    ackMode: explicit
    operations: [A, B]
    redelivery: {maxRedeliveries: 2, initialDelay: 20ms}
`
	return map[string]string{
		"opsrunner.yaml": strings.ReplaceAll(manifest, "PFX", prefix),
		"a.js":           "function handle(event, ctx) { SendMessage('/queue/" + prefix + ".effects', 'A:' + event.body.n); ctx.message.commit(); }\n",
		"b.js": "function handle(event, ctx) {\n" +
			"  SendMessage('/queue/" + prefix + ".effects', 'B:' + event.body.n);\n" +
			"  if (event.deliveryCount == 1) ctx.message.rollback('not yet'); else Acknowledge('JBXCommit');\n}\n",
	}
}

// With ackMode explicit, an operation's acknowledgement settles its own
// share: A's commit holds while B rolls back, so the retry copy runs B
// only, and each effect appears once.
func TestExplicitAcksSettleTheirOwnOperation(t *testing.T) {
	ta, dial := brokerCases()[0].start(t)
	prefix := fmt.Sprintf("x%d", rand.Uint32())
	ta.mustDeploy(t, "explicit", bundle(t, explicitProject(prefix)))
	waitFor(t, 30*time.Second, func() bool {
		r := ta.do(t, "GET", "/api/v1/listeners?q=explicit", "", nil, nil)
		return strings.Contains(string(r.Body), `"status":"on"`)
	})
	conn := dial(t)
	sendJSON(t, conn, "/queue/"+prefix+".in", `{"n":1}`)
	count := map[string]int{}
	waitFor(t, 30*time.Second, func() bool {
		clear(count)
		for _, r := range ta.runsWhere(t, "listener=explicit/in") {
			count[r.Operation+" "+r.Outcome]++
		}
		return count["B committed"] == 1
	})
	if want := map[string]int{"A committed": 1, "B rolled_back": 1, "B committed": 1}; !maps.Equal(count, want) {
		t.Errorf("runs by operation and outcome = %v, want %v", count, want)
	}
	effects := map[string]int{}
	for _, m := range drain(t, conn, "/queue/"+prefix+".effects", 2*time.Second) {
		effects[string(m.Body)]++
	}
	if want := map[string]int{"A:1": 1, "B:1": 1}; !maps.Equal(effects, want) {
		t.Errorf("effects = %v, want %v", effects, want)
	}
}
