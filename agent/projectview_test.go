package agent_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/opsrunner/opsrunner/agent"
)

// projectOperations is what GET /api/v1/projects/{project} says of the
// live version's operations.
type projectOperations struct {
	Name          string `json:"name"`
	ActiveVersion int    `json:"activeVersion"`
	Operations    []struct {
		Name    string `json:"name"`
		Type    string `json:"type"`
		Webhook *struct {
			Path string `json:"path"`
			URL  string `json:"url"`
		} `json:"webhook"`
		Listeners []string `json:"listeners"`
		Schedules []string `json:"schedules"`
		Timeout   string   `json:"timeout"`
	} `json:"operations"`
}

func (ta *testAgent) projectOperations(t *testing.T, project string) projectOperations {
	t.Helper()
	r := ta.do(t, http.MethodGet, "/api/v1/projects/"+project, "", nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET project %s: %d %s", project, r.Status, r.Body)
	}
	var p projectOperations
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Fatalf("project %s: %v: %s", project, err, r.Body)
	}
	return p
}

// GET /api/v1/projects/{project} lists the live version's operations in
// manifest order, each with its webhook (path and URL), the listeners
// feeding it and its time limit; a rollback changes them.
func TestProjectShowsItsLiveOperationsWithTheirTriggers(t *testing.T) {
	ta := startAgent(t, nil)
	ta.mustDeploy(t, "jms-orders", sampleBundle(t, "jms-orders"))

	p := ta.projectOperations(t, "jms-orders")
	type op struct{ name, typ, hook, url, listeners, timeout string }
	var got []op
	for _, o := range p.Operations {
		v := op{name: o.Name, typ: o.Type, timeout: o.Timeout}
		if o.Webhook != nil {
			v.hook, v.url = o.Webhook.Path, o.Webhook.URL
		}
		if o.Listeners == nil {
			t.Errorf("operation %s: listeners is null, want a list", o.Name)
		}
		if o.Schedules != nil {
			t.Errorf("operation %s: schedules %v, want none (the project has no schedules)", o.Name, o.Schedules)
		}
		for i, l := range o.Listeners {
			if i > 0 {
				v.listeners += ","
			}
			v.listeners += l
		}
		got = append(got, v)
	}
	want := []op{
		{name: "1. JMS Listen", typ: "script", listeners: "jms-orders/orders-in", timeout: "20s"},
		{name: "2. Business Logic", typ: "script", timeout: "10s"},
		{name: "3. JMS Acknowledge (Rollback)", typ: "acknowledge"}, // runs no script: no time limit
		{name: "4. JMS Acknowledge (Commit)", typ: "acknowledge"},
		{name: "Customer Logic", typ: "script", listeners: "jms-orders/orders-v3", timeout: "20s"},
		{name: "Send Order", typ: "script", hook: "send", url: "/hooks/jms-orders/send", timeout: "5s"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("operations:\n got %+v\nwant %+v", got, want)
	}

	// A name with a space gets the escaped path; a rollback shows the
	// older version's operations again.
	ta.mustDeploy(t, "jms-orders", bundle(t, map[string]string{
		"opsrunner.yaml": "project: jms-orders\noperations:\n  - {name: Say Hello, script: hello.js, webhook: {}}\n",
		"hello.js":       "function handle(event) { return 1; }\n",
	}))
	p = ta.projectOperations(t, "jms-orders")
	if len(p.Operations) != 1 || p.Operations[0].Webhook == nil || p.Operations[0].Webhook.URL != "/hooks/jms-orders/Say%20Hello" {
		t.Fatalf("version 2's operations: %+v", p.Operations)
	}
	if r := ta.do(t, http.MethodPost, p.Operations[0].Webhook.URL, "application/json", []byte(`{}`), nil); r.Status != http.StatusOK {
		t.Errorf("POST %s (the URL the API gives): %d %s", p.Operations[0].Webhook.URL, r.Status, r.Body)
	}
	if r := ta.do(t, http.MethodPost, "/api/v1/projects/jms-orders/rollback", "application/json", []byte(`{"version": 1}`), nil); r.Status != http.StatusOK {
		t.Fatalf("rollback: %d %s", r.Status, r.Body)
	}
	if p = ta.projectOperations(t, "jms-orders"); len(p.Operations) != 6 {
		t.Errorf("after the rollback %d operations are listed, want version 1's 6", len(p.Operations))
	}
}

const scheduledManifest = `project: clocked
operations:
  - {name: Beat, script: op.js, webhook: {path: beat}}
  - {name: Report, script: op.js}
  - {name: Idle, script: op.js}
schedules:
  - {name: hourly, every: 1h, operations: [Beat, Report]}
  - {name: weekday, cron: "30 7 * * MON-FRI", timezone: Europe/Berlin, operations: [Report]}
`

// Each operation names the schedules whose ticks run it, by id, in
// manifest order; an operation no schedule runs has no schedules field.
func TestProjectOperationsNameTheirSchedules(t *testing.T) {
	ta := startAgent(t, nil)
	ta.mustDeploy(t, "clocked", bundle(t, map[string]string{"opsrunner.yaml": scheduledManifest, "op.js": "function handle(event) {}\n"}))

	r := ta.do(t, http.MethodGet, "/api/v1/projects/clocked", "", nil, nil)
	var raw struct{ Operations []map[string]json.RawMessage }
	if err := json.Unmarshal(r.Body, &raw); err != nil || r.Status != http.StatusOK {
		t.Fatalf("GET project: %d %s", r.Status, r.Body)
	}
	got := map[string]string{}
	for _, o := range raw.Operations {
		var name string
		_ = json.Unmarshal(o["name"], &name)
		got[name] = string(o["schedules"])
	}
	want := map[string]string{
		"Beat":   `["clocked/hourly"]`,
		"Report": `["clocked/hourly","clocked/weekday"]`,
		"Idle":   "", // left out, not null or []
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("operations' schedules:\n got %v\nwant %v", got, want)
	}
}

// listenerCounts is what GET /api/v1/listeners says of a listener's
// destination on the embedded broker.
type listenerCounts struct {
	ID        string `json:"id"`
	Backlog   *int   `json:"backlog"`
	InFlight  *int   `json:"inFlight"`
	Consumers *int   `json:"consumers"`
}

func (ta *testAgent) listenerCounts(t *testing.T, id string) listenerCounts {
	t.Helper()
	var page struct{ Listeners []listenerCounts }
	r := ta.do(t, http.MethodGet, "/api/v1/listeners", "", nil, nil)
	if err := json.Unmarshal(r.Body, &page); err != nil || r.Status != http.StatusOK {
		t.Fatalf("GET listeners: %d %s", r.Status, r.Body)
	}
	for _, l := range page.Listeners {
		if l.ID == id {
			return l
		}
	}
	t.Fatalf("no listener %s in %s", id, r.Body)
	return listenerCounts{}
}

func count(p *int) any {
	if p == nil {
		return "absent"
	}
	return *p
}

const countedManifest = `project: counted
operations:
  - {name: take, script: take.js}
listeners:
  - {name: in, destination: /queue/counted.in, operations: [take]}
`

// A listener on the agent's embedded broker shows its destination's
// backlog, messages in flight and consumers: messages sent while it is off
// wait, counted, and are taken once it is on. A listener on a broker that
// is not the agent's own shows none of the counts.
func TestListenerShowsBacklogOnTheEmbeddedBroker(t *testing.T) {
	ta := startAgent(t, nil)
	ta.mustDeploy(t, "counted", bundle(t, map[string]string{"opsrunner.yaml": countedManifest, "take.js": "function handle(event) {}\n"}))
	const id = "counted/in"
	waitFor(t, 30*time.Second, func() bool { c := ta.listenerCounts(t, id); return c.Consumers != nil && *c.Consumers == 1 })
	if r := ta.do(t, http.MethodPut, "/api/v1/listeners/counted%2Fin/state", "application/json", []byte(`{"enabled": false}`), nil); r.Status != http.StatusOK {
		t.Fatalf("switch off: %d %s", r.Status, r.Body)
	}
	waitFor(t, 30*time.Second, func() bool { c := ta.listenerCounts(t, id); return c.Consumers != nil && *c.Consumers == 0 })

	conn, err := stomp.Dial("tcp", ta.BrokerAddr())
	if err != nil {
		t.Fatalf("dial embedded: %v", err)
	}
	defer conn.Disconnect()
	for _, n := range []string{"1", "2", "3"} {
		sendJSON(t, conn, "/queue/counted.in", `{"n": `+n+`}`)
	}
	c := ta.listenerCounts(t, id)
	if count(c.Backlog) != 3 || count(c.InFlight) != 0 || count(c.Consumers) != 0 {
		t.Errorf("off, with 3 messages sent: backlog %v, in flight %v, consumers %v; want 3, 0, 0", count(c.Backlog), count(c.InFlight), count(c.Consumers))
	}

	ta.do(t, http.MethodPut, "/api/v1/listeners/counted%2Fin/state", "application/json", []byte(`{"enabled": true}`), nil)
	ta.do(t, http.MethodPut, "/api/v1/listeners/counted%2Fin/operations/take/state", "application/json", []byte(`{"enabled": true}`), nil)
	waitFor(t, 30*time.Second, func() bool {
		c := ta.listenerCounts(t, id)
		return count(c.Backlog) == 0 && count(c.InFlight) == 0 && count(c.Consumers) == 1
	})

	other := startAgent(t, func(c *agent.Config) {
		c.AgentID = "on-another-broker"
		c.BrokerURL = "stomp://" + ta.BrokerAddr()
		c.Connections = map[string]agent.Connection{"default": {URL: c.BrokerURL}}
	})
	other.mustDeploy(t, "counted", bundle(t, map[string]string{"opsrunner.yaml": countedManifest, "take.js": "function handle(event) {}\n"}))
	if c := other.listenerCounts(t, id); c.Backlog != nil || c.InFlight != nil || c.Consumers != nil {
		t.Errorf("a listener on another agent's broker shows counts: backlog %v, in flight %v, consumers %v", count(c.Backlog), count(c.InFlight), count(c.Consumers))
	}
}
