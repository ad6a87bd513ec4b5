package agent_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/internal/testenv"
)

// brokerCase is one broker the listener behaviours are proven on.
type brokerCase struct {
	kind string
	// start returns an agent wired to the broker and a way to dial it.
	start func(t *testing.T) (*testAgent, func(t *testing.T) *stomp.Conn)
}

func brokerCases() []brokerCase {
	external := func(get func(testing.TB) *testenv.Broker) func(t *testing.T) (*testAgent, func(t *testing.T) *stomp.Conn) {
		return func(t *testing.T) (*testAgent, func(t *testing.T) *stomp.Conn) {
			b := get(t)
			ta := startAgent(t, func(c *agent.Config) {
				url := "stomp://" + b.Addr
				if b.Login != "" {
					url = fmt.Sprintf("stomp://%s:%s@%s", b.Login, b.Passcode, b.Addr)
				}
				c.BrokerURL = url
				c.Connections = map[string]agent.Connection{"default": {URL: url, Host: b.Host}}
			})
			return ta, func(t *testing.T) *stomp.Conn {
				t.Helper()
				conn, err := b.Dial()
				if err != nil {
					t.Fatalf("dial %s: %v", b.Kind, err)
				}
				t.Cleanup(func() { conn.Disconnect() })
				return conn
			}
		}
	}
	return []brokerCase{
		{"embedded", func(t *testing.T) (*testAgent, func(t *testing.T) *stomp.Conn) {
			ta := startAgent(t, nil)
			return ta, func(t *testing.T) *stomp.Conn {
				t.Helper()
				conn, err := stomp.Dial("tcp", ta.BrokerAddr())
				if err != nil {
					t.Fatalf("dial embedded: %v", err)
				}
				t.Cleanup(func() { conn.Disconnect() })
				return conn
			}
		}},
		{"activemq", external(testenv.ActiveMQ)},
		{"rabbitmq", external(testenv.RabbitMQ)},
	}
}

// jmsProject is the seed's transacted-session project with destinations
// under prefix.
func jmsProject(prefix string) map[string]string {
	manifest := `project: jms
operations:
  - name: "1. JMS Listen"
    script: listen.js
    timeout: 5s
    onSuccess: ["4. JMS Acknowledge (Commit)"]
    onFailure: ["3. JMS Acknowledge (Rollback)"]
  - name: "3. JMS Acknowledge (Rollback)"
    type: acknowledge
    action: JBXRollback
  - name: "4. JMS Acknowledge (Commit)"
    type: acknowledge
    action: jbxcommit
  - name: Customer Logic
    script: logic.js
    timeout: 5s
  - name: Slow
    script: slow.js
    timeout: 8s
listeners:
  - name: v1
    destination: /queue/PFX.v1
    ackMode: explicit
    ackTimeout: 10s
    operations: ["1. JMS Listen"]
    redelivery: {maxRedeliveries: 2, initialDelay: 50ms, multiplier: 2, maxDelay: 200ms}
  - name: v3
    destination: /queue/PFX.v3
    ackMode: explicit
    ackTimeout: 10s
    operations: [Customer Logic]
    redelivery: {maxRedeliveries: 1, initialDelay: 50ms}
  - name: slow
    destination: /queue/PFX.slow
    ackTimeout: 10s
    operations: [Slow]
    redelivery: {maxRedeliveries: 1, initialDelay: 50ms}
`
	return map[string]string{
		"opsrunner.yaml": strings.ReplaceAll(manifest, "PFX", prefix),
		"listen.js": strings.ReplaceAll(`function handle(event, ctx) {
  log.info("message", event.messageId, "attempt", event.deliveryCount);
  Set("orderId", event.body.id);
  SendMessage("/queue/PFX.effects", {id: event.body.id, attempt: event.deliveryCount});
  if (event.body.fail) {
    RaiseError("bad order " + event.body.id);
  }
  return {ok: true, prop: event.properties.JMS_PROP_region};
}
`, "PFX", prefix),
		"logic.js": strings.ReplaceAll(`function handle(event) {
  SendMessage("/queue/PFX.effects3", {id: event.body.id});
  if (event.body.ok) {
    RunOperation("<TAG>Operations/4. JMS Acknowledge (Commit)</TAG>", true);
  } else {
    RunOperation("<TAG>Operations/3. JMS Acknowledge (Rollback)</TAG>", true);
  }
}
`, "PFX", prefix),
		"slow.js": "function handle() { while (true) {} }\n",
	}
}

func sendJSON(t *testing.T, conn *stomp.Conn, dest string, body string, headers ...string) {
	t.Helper()
	opts := []func(*frame.Frame) error{stomp.SendOpt.Header("persistent", "true"), stomp.SendOpt.Receipt}
	for i := 0; i+1 < len(headers); i += 2 {
		opts = append(opts, stomp.SendOpt.Header(headers[i], headers[i+1]))
	}
	if err := conn.Send(dest, "application/json", []byte(body), opts...); err != nil {
		t.Fatalf("send to %s: %v", dest, err)
	}
}

// drainLimit bounds drain: messages still arriving after it fail the test.
const drainLimit = time.Minute

// drain collects the messages on dest until none arrives for quiet. It
// subscribes with ack auto: go-stomp's client deadlocks when a test ACKs
// while the broker pushes more messages than the subscription's channel
// holds (its one loop both delivers frames and writes the ACK).
func drain(t *testing.T, conn *stomp.Conn, dest string, quiet time.Duration) []*stomp.Message {
	t.Helper()
	sub, err := conn.Subscribe(dest, stomp.AckAuto)
	if err != nil {
		t.Fatalf("subscribe %s: %v", dest, err)
	}
	defer sub.Unsubscribe()
	var out []*stomp.Message
	limit := time.After(drainLimit)
	for {
		select {
		case <-limit:
			t.Fatalf("%s: messages still arriving after %s (%d so far)", dest, drainLimit, len(out))
		case m, ok := <-sub.C:
			if !ok || m.Err != nil {
				return out
			}
			out = append(out, m)
		case <-time.After(quiet):
			return out
		}
	}
}

type runView struct {
	ID, Operation, Status, Outcome, Error, MessageID, Listener string
	Attempt                                                    int
}

func (ta *testAgent) runsWhere(t *testing.T, query string) []runView {
	t.Helper()
	r := ta.do(t, "GET", "/api/v1/runs?limit=1000&"+query, "", nil, nil)
	var page struct{ Runs []runView }
	if err := json.Unmarshal(r.Body, &page); err != nil {
		t.Fatalf("runs: %v %s", err, r.Body)
	}
	return page.Runs
}

func TestListenersOnEveryBroker(t *testing.T) {
	for _, bc := range brokerCases() {
		t.Run(bc.kind, func(t *testing.T) {
			ta, dial := bc.start(t)
			prefix := fmt.Sprintf("t%d", rand.Uint32())
			ta.mustDeploy(t, "jms", bundle(t, jmsProject(prefix)))
			waitFor(t, 30*time.Second, func() bool {
				r := ta.do(t, "GET", "/api/v1/listeners?q=jms", "", nil, nil)
				return strings.Count(string(r.Body), `"status":"on"`) == 3
			})
			conn := dial(t)
			var wg sync.WaitGroup
			defer wg.Wait()

			t.Run("variation 1: commit on success removes the message, its sends appear once", func(t *testing.T) {
				sendJSON(t, conn, "/queue/"+prefix+".v1", `{"id":"ok-1"}`, "region", "emea")
				var runs []runView
				waitFor(t, 20*time.Second, func() bool {
					runs = ta.runsWhere(t, "operation=1.+JMS+Listen&status=succeeded")
					return len(runs) == 1 && runs[0].Outcome == "committed"
				})
				if runs[0].MessageID == "" || runs[0].Attempt != 1 || runs[0].Listener != "jms/v1" {
					t.Errorf("run = %+v", runs[0])
				}
				byMsg := ta.runsWhere(t, "messageId="+runs[0].MessageID)
				if len(byMsg) != 1 {
					t.Errorf("runs?messageId= found %d runs", len(byMsg))
				}
				effects := drain(t, conn, "/queue/"+prefix+".effects", 2*time.Second)
				if len(effects) != 1 || !strings.Contains(string(effects[0].Body), "ok-1") {
					t.Fatalf("effects: %d", len(effects))
				}
				if left := drain(t, conn, "/queue/"+prefix+".v1", time.Second); len(left) != 0 {
					t.Errorf("committed message still on the queue")
				}
			})

			t.Run("variation 1: failure rolls back, redelivers and dead-letters with the cause; its sends never appear", func(t *testing.T) {
				sendJSON(t, conn, "/queue/"+prefix+".v1", `{"id":"bad-1","fail":true}`)
				var dls []map[string]any
				waitFor(t, 30*time.Second, func() bool {
					r := ta.do(t, "GET", "/api/v1/deadletters?listener=jms/v1", "", nil, nil)
					dls = nil
					_ = json.Unmarshal(r.Body, &struct{ DeadLetters *[]map[string]any }{&dls})
					return len(dls) == 1
				})
				dl := dls[0]
				if dl["attempts"] != float64(3) || !strings.Contains(fmt.Sprint(dl["error"]), "bad order bad-1") ||
					dl["deadLetterDestination"] != "/queue/"+prefix+".v1.DLQ" {
					t.Errorf("dead letter = %v", dl)
				}
				copies := drain(t, conn, "/queue/"+prefix+".v1.DLQ", 2*time.Second)
				if len(copies) != 1 {
					t.Fatalf("DLQ copies: %d", len(copies))
				}
				h := copies[0].Header
				for _, k := range []string{"opsrunner-error", "opsrunner-attempts", "opsrunner-original-destination", "opsrunner-original-message-id", "opsrunner-agent", "opsrunner-failed-at"} {
					if h.Get(k) == "" {
						t.Errorf("DLQ copy lacks %s", k)
					}
				}
				if h.Get("opsrunner-attempts") != "3" || h.Get("opsrunner-original-destination") != "/queue/"+prefix+".v1" {
					t.Errorf("DLQ headers: attempts %q destination %q", h.Get("opsrunner-attempts"), h.Get("opsrunner-original-destination"))
				}
				rolled := ta.runsWhere(t, "operation=1.+JMS+Listen&status=failed")
				if len(rolled) != 3 {
					t.Errorf("want 3 failed attempts recorded, got %d", len(rolled))
				}
				if effects := drain(t, conn, "/queue/"+prefix+".effects", 2*time.Second); len(effects) != 0 {
					t.Errorf("a rolled-back run's sends appeared: %d", len(effects))
				}
				// Replay puts it back on the queue: it fails again and comes back to the DLQ store.
				r := ta.do(t, "POST", "/api/v1/deadletters/"+fmt.Sprint(dl["id"])+"/replay", "", nil, nil)
				if r.Status != http.StatusAccepted {
					t.Fatalf("replay: %d %s", r.Status, r.Body)
				}
				waitFor(t, 30*time.Second, func() bool {
					return len(ta.runsWhere(t, "operation=1.+JMS+Listen&status=failed")) == 6
				})
			})

			t.Run("variation 3: the script decides with RunOperation(<TAG>...)", func(t *testing.T) {
				sendJSON(t, conn, "/queue/"+prefix+".v3", `{"id":"v3-ok","ok":true}`)
				sendJSON(t, conn, "/queue/"+prefix+".v3", `{"id":"v3-no","ok":false}`)
				waitFor(t, 30*time.Second, func() bool {
					r := ta.do(t, "GET", "/api/v1/deadletters?listener=jms/v3", "", nil, nil)
					return strings.Contains(string(r.Body), "v3-no")
				})
				effects := drain(t, conn, "/queue/"+prefix+".effects3", 2*time.Second)
				if len(effects) != 1 || !strings.Contains(string(effects[0].Body), "v3-ok") {
					t.Errorf("effects3: %d", len(effects))
				}
			})

			t.Run("a per-message JBXAcknowledgmentTimeout interrupts and rolls back", func(t *testing.T) {
				sendJSON(t, conn, "/queue/"+prefix+".slow", `{"id":"slow"}`, "JBXAcknowledgmentTimeout", "1")
				var runs []runView
				waitFor(t, 30*time.Second, func() bool {
					runs = ta.runsWhere(t, "operation=Slow&status=timed_out")
					return len(runs) == 2
				})
				for _, r := range runs {
					if r.Status != "timed_out" || !strings.Contains(r.Error, "ack timeout") {
						t.Errorf("run = %+v", r)
					}
				}
			})

			t.Run("disabling a listener stops deliveries and loses nothing", func(t *testing.T) {
				put := func(path, body string) {
					t.Helper()
					if r := ta.do(t, "PUT", path, "application/json", []byte(body), nil); r.Status != 200 {
						t.Fatalf("PUT %s: %d %s", path, r.Status, r.Body)
					}
				}
				put("/api/v1/listeners/jms%2Fv1/state", `{"enabled":false}`)
				r := ta.do(t, "GET", "/api/v1/listeners?q=jms/v1", "", nil, nil)
				if !strings.Contains(string(r.Body), `"enabled":false`) {
					t.Fatalf("listener not off: %s", r.Body)
				}
				before := len(ta.runsWhere(t, "operation=1.+JMS+Listen"))
				for i := 0; i < 5; i++ {
					sendJSON(t, conn, "/queue/"+prefix+".v1", fmt.Sprintf(`{"id":"held-%d"}`, i))
				}
				time.Sleep(2 * time.Second)
				if n := len(ta.runsWhere(t, "operation=1.+JMS+Listen")); n != before {
					t.Fatalf("a disabled listener ran %d operations", n-before)
				}
				put("/api/v1/listeners/jms%2Fv1/state", `{"enabled":true}`)
				time.Sleep(time.Second)
				if n := len(ta.runsWhere(t, "operation=1.+JMS+Listen")); n != before {
					t.Fatalf("enabling the listener must not enable its operations, yet %d ran", n-before)
				}
				put("/api/v1/listeners/jms%2Fv1/operations/1.%20JMS%20Listen/state", `{"enabled":true}`)
				waitFor(t, 30*time.Second, func() bool {
					return len(ta.runsWhere(t, "operation=1.+JMS+Listen&status=succeeded")) == 1+5
				})
				effects := drain(t, conn, "/queue/"+prefix+".effects", 2*time.Second)
				if len(effects) != 5 {
					t.Errorf("held messages' effects: %d, want 5", len(effects))
				}
			})
		})
	}
}

func TestMain(m *testing.M) { testenv.Main(m) }

// startListener starts an agent (mutate as startAgent's) with project
// name: an operation op running script (5 s timeout), bound to a listener
// on /queue/<name>.in (ack timeout 10 s) with the redelivery policy given (a
// YAML flow map; "" for the default), and sends that queue one message
// {"id": id}.
func startListener(t *testing.T, mutate func(*agent.Config), name, op, script, redelivery, id string) *testAgent {
	t.Helper()
	ta := startAgent(t, mutate)
	manifest := fmt.Sprintf(`project: %[1]s
operations:
  - name: %[2]s
    script: %[2]s.js
    timeout: 5s
listeners:
  - name: in
    destination: /queue/%[1]s.in
    ackTimeout: 10s
    operations: [%[2]s]
`, name, op)
	if redelivery != "" {
		manifest += "    redelivery: " + redelivery + "\n"
	}
	ta.mustDeploy(t, name, bundle(t, map[string]string{"opsrunner.yaml": manifest, op + ".js": script}))
	conn, err := stomp.Dial("tcp", ta.BrokerAddr())
	if err != nil {
		t.Fatalf("dial embedded: %v", err)
	}
	defer conn.Disconnect()
	sendJSON(t, conn, "/queue/"+name+".in", fmt.Sprintf(`{"id":%q}`, id))
	return ta
}

// startFailingListener is startListener with an operation "fail" that throws.
func startFailingListener(t *testing.T, name, redelivery, id string) *testAgent {
	t.Helper()
	return startListener(t, nil, name, "fail", "function handle(event) { throw new Error('no ' + event.body.id); }\n", redelivery, id)
}

// startSlowRun is startListener with an operation "slow" that runs for busy,
// returning once its run is under way.
func startSlowRun(t *testing.T, mutate func(*agent.Config), name string, busy time.Duration, id string) *testAgent {
	t.Helper()
	script := fmt.Sprintf("function handle(event) { var end = Date.now() + %d; while (Date.now() < end) {} return event.body.id; }\n", busy.Milliseconds())
	ta := startListener(t, mutate, name, "slow", script, "", id)
	waitFor(t, 10*time.Second, func() bool { return len(ta.runsWhere(t, "operation=slow&status=running")) == 1 })
	return ta
}

// A run that failed is recorded as failed and rolled back as soon as the
// delivery is rolled back, not once its redelivery backoff has passed:
// "what happened to message X" must not answer "running" for up to
// maxDelay about a run that is over.
func TestRolledBackRunIsRecordedBeforeTheBackoff(t *testing.T) {
	ta := startFailingListener(t, "backoff", "{initialDelay: 1m, maxRedeliveries: 3}", "b-1")
	var runs []runView
	waitFor(t, 15*time.Second, func() bool {
		runs = ta.runsWhere(t, "operation=fail")
		return len(runs) == 1 && runs[0].Outcome != ""
	})
	if r := runs[0]; r.Status != "failed" || r.Outcome != "rolled_back" || r.Attempt != 1 || !strings.Contains(r.Error, "no b-1") {
		t.Errorf("run during the backoff = %+v, want failed, rolled_back, attempt 1", r)
	}
}

// maxRedeliveries: 0 in a manifest means what it says (ActiveMQ's
// maximumRedeliveries=0): the first failure dead-letters the message. It
// used to be taken for "unset" and redelivered five times.
func TestMaxRedeliveriesZeroDeadLettersTheFirstFailure(t *testing.T) {
	ta := startFailingListener(t, "once", "{maxRedeliveries: 0, initialDelay: 50ms}", "o-1")
	var dls []map[string]any
	waitFor(t, 15*time.Second, func() bool {
		r := ta.do(t, "GET", "/api/v1/deadletters?listener=once/in", "", nil, nil)
		dls = nil
		_ = json.Unmarshal(r.Body, &struct{ DeadLetters *[]map[string]any }{&dls})
		return len(dls) == 1
	})
	if dls[0]["attempts"] != float64(1) {
		t.Errorf("dead letter after %v attempts, want 1", dls[0]["attempts"])
	}
	time.Sleep(500 * time.Millisecond) // ten initial delays: a redelivery would have run by now
	runs := ta.runsWhere(t, "operation=fail")
	if len(runs) != 1 || runs[0].Outcome != "dead_lettered" {
		t.Errorf("runs = %+v, want one, dead-lettered", runs)
	}
}

// A graceful shutdown lets a delivery in flight finish and commit on the
// embedded broker before the broker closes: after a restart the message is
// not delivered again (the local processed markers do not survive it, so
// it would run twice). The broker used to close as soon as shutdown began.
func TestShutdownCommitsDeliveriesInFlightBeforeTheBrokerCloses(t *testing.T) {
	dir := t.TempDir()
	sameDir := func(c *agent.Config) { c.DataDir = dir }
	ta := startSlowRun(t, sameDir, "grace", 1500*time.Millisecond, "g-1")
	ta.stop() // while the run is in flight

	again := startAgent(t, sameDir)
	time.Sleep(2 * time.Second) // a redelivered copy would have run by now
	runs := again.runsWhere(t, "operation=slow")
	if len(runs) != 1 || runs[0].Status != "succeeded" || runs[0].Outcome != "committed" {
		t.Fatalf("runs after the restart = %+v, want one, succeeded and committed", runs)
	}
}

// A single agent with no configured id makes one up on its first start and
// keeps it in its data dir: a new id at every start left its durable topic
// subscriptions behind (on the broker, each keeps every message published
// to its topic) and lost what was published while the agent was stopped.
func TestAgentKeepsTheIDItMadeUp(t *testing.T) {
	dir := t.TempDir()
	madeUp := func(c *agent.Config) { c.DataDir = dir; c.AgentID = "" }
	first := startAgent(t, madeUp)
	id := first.selfID(t)
	if id == "" || id == "test-agent" {
		t.Fatalf("first start: id %q", id)
	}
	first.mustDeploy(t, "news", bundle(t, map[string]string{
		"opsrunner.yaml": `project: news
operations:
  - name: read
    script: read.js
listeners:
  - name: t
    destination: /topic/news.all
    durable: true
    ackTimeout: 60s
    operations: [read]
`,
		"read.js": "function handle(event) { return event.body; }\n",
	}))
	// A message read proves the durable subscription is there.
	publish := func(ta *testAgent, bodies ...string) {
		t.Helper()
		conn, err := stomp.Dial("tcp", ta.BrokerAddr())
		if err != nil {
			t.Fatalf("dial embedded: %v", err)
		}
		defer conn.Disconnect()
		for _, b := range bodies {
			sendJSON(t, conn, "/topic/news.all", b)
		}
	}
	waitFor(t, 15*time.Second, func() bool {
		publish(first, `{"n":0}`)
		time.Sleep(200 * time.Millisecond)
		return len(first.runsWhere(t, "operation=read&status=succeeded")) > 0
	})
	before := len(first.runsWhere(t, "operation=read&status=succeeded"))
	// The binding off, the listener stops; its durable subscription stays.
	if r := first.do(t, "PUT", "/api/v1/listeners/news%2Ft/operations/read/state", "application/json", []byte(`{"enabled":false}`), nil); r.Status != 200 {
		t.Fatalf("disable: %d %s", r.Status, r.Body)
	}
	first.stop()

	again := startAgent(t, madeUp)
	if got := again.selfID(t); got != id {
		t.Fatalf("second start: id %q, want the kept %q", got, id)
	}
	publish(again, `{"n":1}`, `{"n":2}`)
	if r := again.do(t, "PUT", "/api/v1/listeners/news%2Ft/operations/read/state", "application/json", []byte(`{"enabled":true}`), nil); r.Status != 200 {
		t.Fatalf("enable: %d %s", r.Status, r.Body)
	}
	waitFor(t, 15*time.Second, func() bool {
		return len(again.runsWhere(t, "operation=read&status=succeeded")) == before+2
	})
}

// A run its agent stopped in the middle of (killed, or past the shutdown
// timeout) is recorded as failed, interrupted, when the agent starts again:
// nothing else would finish it, and the history showed it running for ever.
// The message itself goes back to the broker and runs again.
func TestRunsLeftRunningAreEndedAtTheNextStart(t *testing.T) {
	dir := t.TempDir()
	sameDir := func(c *agent.Config) {
		c.DataDir = dir
		c.ShutdownTimeout = agent.Duration(200 * time.Millisecond) // the run outlives it
	}
	ta := startSlowRun(t, sameDir, "cut", 2*time.Second, "c-1")
	cut := ta.runsWhere(t, "operation=slow&status=running")[0]
	ta.stop()

	again := startAgent(t, sameDir)
	var runs []runView
	waitFor(t, 15*time.Second, func() bool {
		runs = again.runsWhere(t, "operation=slow")
		return len(runs) == 2 && runs[0].Outcome == "committed"
	})
	if r := runs[1]; r.ID != cut.ID || r.Status != "failed" || !strings.Contains(r.Error, "interrupted") {
		t.Errorf("the cut run = %+v, want %s failed, interrupted", r, cut.ID)
	}
}
