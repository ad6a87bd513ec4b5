package agent_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/internal/testenv"
)

func TestDeployRefusesSelectorsOnBrokersWithout(t *testing.T) {
	b := testenv.RabbitMQ(t)
	url := fmt.Sprintf("stomp://%s:%s@%s", b.Login, b.Passcode, b.Addr)
	ta := startAgent(t, func(c *agent.Config) {
		c.BrokerURL = url
		c.Connections = map[string]agent.Connection{"default": {URL: url, Host: b.Host}}
	})
	files := map[string]string{
		"opsrunner.yaml": "project: sel\noperations:\n  - name: op\n    script: op.js\nlisteners:\n  - name: l\n    destination: /queue/sel\n    selector: \"region = 'emea'\"\n    operations: [op]\n",
		"op.js":          "function handle() {}\n",
	}
	r := ta.deploy(t, "sel", bundle(t, files))
	if r.Status != 400 || !strings.Contains(string(r.Body), "selector") || !strings.Contains(string(r.Body), `"line":6`) {
		t.Fatalf("selector on RabbitMQ: %d %s", r.Status, r.Body)
	}
	bad := map[string]string{
		"opsrunner.yaml": "project: sel\noperations:\n  - name: op\n    script: op.js\nlisteners:\n  - name: l\n    destination: /queue/sel\n    connection: nowhere\n    operations: [op]\n",
		"op.js":          "function handle() {}\n",
	}
	r = ta.deploy(t, "sel", bundle(t, bad))
	if r.Status != 400 || !strings.Contains(string(r.Body), "nowhere") {
		t.Fatalf("unknown connection: %d %s", r.Status, r.Body)
	}
}

// A selector the embedded broker would refuse on every SUBSCRIBE is refused
// at deploy, where the error can name its line; the listener used to be
// deployed and then reconnect for ever with "bad selector".
func TestDeployRefusesASelectorTheEmbeddedBrokerCannotParse(t *testing.T) {
	ta := startAgent(t, nil)
	files := map[string]string{
		"opsrunner.yaml": "project: sel\noperations:\n  - name: op\n    script: op.js\nlisteners:\n  - name: l\n    destination: /queue/sel\n    selector: \"color = 'red' AND (\"\n    operations: [op]\n",
		"op.js":          "function handle() {}\n",
	}
	r := ta.deploy(t, "sel", bundle(t, files))
	if r.Status != 400 || !strings.Contains(string(r.Body), "selector") || !strings.Contains(string(r.Body), "end of selector") ||
		!strings.Contains(string(r.Body), `"line":6`) {
		t.Fatalf("bad selector: %d %s", r.Status, r.Body)
	}
	files["opsrunner.yaml"] = strings.Replace(files["opsrunner.yaml"], `AND (`, `AND (size > 2)`, 1)
	if r := ta.deploy(t, "sel", bundle(t, files)); r.Status != 201 {
		t.Fatalf("good selector: %d %s", r.Status, r.Body)
	}
}

func TestSelectorsAndDurableTopics(t *testing.T) {
	for _, bc := range brokerCases() {
		t.Run(bc.kind, func(t *testing.T) {
			ta, dial := bc.start(t)
			prefix := fmt.Sprintf("s%d", rand.Uint32())
			manifest := `project: top
operations:
  - name: op
    script: op.js
listeners:
  - name: news
    destination: /topic/PFX.news
    durable: true
    subscriberName: PFX-sub
    operations: [op]
`
			if bc.kind != "rabbitmq" {
				manifest += `  - name: emea
    destination: /queue/PFX.orders
    selector: "region = 'emea'"
    operations: [op]
`
			}
			files := map[string]string{
				"opsrunner.yaml": strings.ReplaceAll(manifest, "PFX", prefix),
				"op.js":          "function handle(event) { return event.body.id; }\n",
			}
			ta.mustDeploy(t, "top", bundle(t, files))
			waitFor(t, 30*time.Second, func() bool {
				return !strings.Contains(string(ta.do(t, "GET", "/api/v1/listeners", "", nil, nil).Body), "connecting")
			})
			time.Sleep(500 * time.Millisecond) // subscriptions registered
			conn := dial(t)

			if bc.kind != "rabbitmq" {
				t.Run("a selector takes only matching messages; the rest stay on the queue", func(t *testing.T) {
					sendJSON(t, conn, "/queue/"+prefix+".orders", `{"id":"e1"}`, "region", "emea")
					sendJSON(t, conn, "/queue/"+prefix+".orders", `{"id":"u1"}`, "region", "us")
					waitFor(t, 20*time.Second, func() bool {
						return len(ta.runsWhere(t, "operation=op&status=succeeded")) == 1
					})
					left := drain(t, conn, "/queue/"+prefix+".orders", 2*time.Second)
					if len(left) != 1 || !strings.Contains(string(left[0].Body), "u1") {
						t.Fatalf("left on the queue: %d", len(left))
					}
				})
			}

			t.Run("a durable subscription keeps messages while the listener is off", func(t *testing.T) {
				before := len(ta.runsWhere(t, "operation=op"))
				sendJSON(t, conn, "/topic/"+prefix+".news", `{"id":"n1"}`)
				waitFor(t, 20*time.Second, func() bool { return len(ta.runsWhere(t, "operation=op")) == before+1 })
				if r := ta.do(t, "PUT", "/api/v1/listeners/top%2Fnews/state", "application/json", []byte(`{"enabled":false}`), nil); r.Status != 200 {
					t.Fatalf("disable: %d %s", r.Status, r.Body)
				}
				time.Sleep(time.Second)
				sendJSON(t, conn, "/topic/"+prefix+".news", `{"id":"n2"}`)
				time.Sleep(time.Second)
				if n := len(ta.runsWhere(t, "operation=op")); n != before+1 {
					t.Fatalf("disabled listener ran")
				}
				for _, p := range []string{"/api/v1/listeners/top%2Fnews/state", "/api/v1/listeners/top%2Fnews/operations/op/state"} {
					if r := ta.do(t, "PUT", p, "application/json", []byte(`{"enabled":true}`), nil); r.Status != 200 {
						t.Fatalf("enable: %d %s", r.Status, r.Body)
					}
				}
				waitFor(t, 20*time.Second, func() bool { return len(ta.runsWhere(t, "operation=op")) == before+2 })
			})
		})
	}
}
