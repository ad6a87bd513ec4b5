package agent_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/opsrunner/opsrunner/agent"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// manifestMetered has a webhook, a listener whose operation commits and
// one whose operation fails and dead-letters at once.
const manifestMetered = `project: metered
operations:
  - name: hello
    script: hello.js
    webhook: {path: hello}
  - name: take
    script: hello.js
  - name: fail
    script: fail.js
listeners:
  - name: good
    destination: /queue/metered.good
    operations: [take]
  - name: bad
    destination: /queue/metered.bad
    operations: [fail]
    redelivery: {maxRedeliveries: 0, initialDelay: 50ms}
`

// manifestMeteredSmaller is manifestMetered redeployed without the
// listener bad and its operation.
const manifestMeteredSmaller = `project: metered
operations:
  - name: hello
    script: hello.js
    webhook: {path: hello}
  - name: take
    script: hello.js
listeners:
  - name: good
    destination: /queue/metered.good
    operations: [take]
`

func meteredBundle(t *testing.T, manifest string) []byte {
	return bundle(t, map[string]string{
		"opsrunner.yaml": manifest,
		"hello.js":       "function handle(event) { return {status: 200, body: 'hi'}; }\n",
		"fail.js":        "function handle(event) { throw new Error('no'); }\n",
	})
}

// /metrics of a real agent, after a webhook run, a committed delivery and
// a dead letter, has each series with its labels; a redeploy without a
// listener and its operation removes their series.
func TestMetricsAfterAWebhookADeliveryAndADeadLetter(t *testing.T) {
	ta := startAgent(t, func(c *agent.Config) { c.Workers, c.MaxInflight = 2, 50 })
	ta.mustDeploy(t, "metered", meteredBundle(t, manifestMetered))
	if r := ta.do(t, "POST", "/hooks/metered/hello", "application/json", []byte(`{}`), nil); r.Status != http.StatusOK {
		t.Fatalf("webhook: %d %s", r.Status, r.Body)
	}
	conn, err := stomp.Dial("tcp", ta.BrokerAddr())
	if err != nil {
		t.Fatalf("dial embedded: %v", err)
	}
	defer conn.Disconnect()
	sendJSON(t, conn, "/queue/metered.good", `{"id":"g-1"}`)
	sendJSON(t, conn, "/queue/metered.bad", `{"id":"b-1"}`)
	waitFor(t, 15*time.Second, func() bool {
		return len(ta.runsWhere(t, "operation=take&outcome=committed")) == 1 &&
			len(ta.runsWhere(t, "operation=fail&outcome=dead_lettered")) == 1 &&
			len(deadLetters(t, ta, "metered/bad")) == 1
	})

	// The store writes runs to bbolt in the background (every 200 ms; with
	// run_durability sync they were made durable in its run log first).
	var families map[string]*dto.MetricFamily
	waitFor(t, 5*time.Second, func() bool {
		families = scrape(t, ta)
		n, ok := value(families, "opsrunner_store_flush_duration_seconds", nil)
		return ok && n >= 1
	})
	project := map[string]string{"project": "metered"}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"opsrunner_runs_total", with(project, "operation", "hello", "trigger", "webhook", "status", "succeeded"), 1},
		{"opsrunner_runs_total", with(project, "operation", "take", "trigger", "listener", "status", "succeeded"), 1},
		{"opsrunner_runs_total", with(project, "operation", "fail", "trigger", "listener", "status", "failed"), 1},
		{"opsrunner_listener_deliveries_total", with(project, "listener", "good", "outcome", "committed"), 1},
		{"opsrunner_listener_deliveries_total", with(project, "listener", "bad", "outcome", "dead_lettered"), 1},
		{"opsrunner_delivery_outcomes_total", map[string]string{"outcome": "committed"}, 1},
		{"opsrunner_delivery_outcomes_total", map[string]string{"outcome": "dead_lettered"}, 1},
		{"opsrunner_dead_letters_stored", project, 1},
		{"opsrunner_runs_in_progress_limit", nil, 50},
		{"opsrunner_workers", nil, 2},
		{"opsrunner_cluster_quorum_ok", nil, 1},
		{"opsrunner_cluster_live_agents", nil, 1},
		{"opsrunner_cluster_required_agents", nil, 1},
		{"opsrunner_cluster_leader", nil, 1},
		{"opsrunner_broker_queue_consumers", map[string]string{"destination": "/queue/metered.good"}, 1},
		{"opsrunner_broker_queue_depth", map[string]string{"destination": "/queue/metered.good"}, 0},
		{"opsrunner_broker_queue_depth", map[string]string{"destination": "/queue/metered.bad.DLQ"}, 1},
	} {
		if got, ok := value(families, c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{
		{"opsrunner_run_duration_seconds", with(project, "trigger", "webhook")},
		{"opsrunner_run_duration_seconds", with(project, "trigger", "listener")},
		{"opsrunner_store_flush_duration_seconds", nil},
		{"opsrunner_store_log_append_duration_seconds", nil}, // run_durability sync: the webhook waited for one
	} {
		if n, ok := value(families, c.name, c.labels); !ok || n < 1 {
			t.Errorf("%s%v observed %v times (found %v), want some", c.name, c.labels, n, ok)
		}
	}
	for _, name := range []string{"opsrunner_runs_in_progress", "opsrunner_workers_busy", "opsrunner_broker_destinations"} {
		if _, ok := value(families, name, nil); !ok {
			t.Errorf("%s is missing", name)
		}
	}

	t.Run("the Grafana dashboard queries only series the agent exposes", func(t *testing.T) {
		for _, name := range dashboardMetrics(t) {
			if families[name] == nil {
				t.Errorf("docs/grafana/opsrunner.json queries %s, which /metrics does not expose", name)
			}
		}
	})

	t.Run("a redeploy without a listener and its operation removes their series", func(t *testing.T) {
		ta.mustDeploy(t, "metered", meteredBundle(t, manifestMeteredSmaller))
		families := scrape(t, ta)
		if _, ok := value(families, "opsrunner_runs_total", with(project, "operation", "fail")); ok {
			t.Error("opsrunner_runs_total still has operation fail")
		}
		if _, ok := value(families, "opsrunner_listener_deliveries_total", with(project, "listener", "bad")); ok {
			t.Error("opsrunner_listener_deliveries_total still has listener bad")
		}
		if n, ok := value(families, "opsrunner_runs_total", with(project, "operation", "hello")); !ok || n != 1 {
			t.Errorf("opsrunner_runs_total of hello = %v (found %v), want it kept at 1", n, ok)
		}
	})
}

// deadLetters lists the dead letters of listener id.
func deadLetters(t *testing.T, ta *testAgent, id string) []map[string]any {
	r := ta.do(t, "GET", "/api/v1/deadletters?listener="+id, "", nil, nil)
	var page struct{ DeadLetters []map[string]any }
	if err := json.Unmarshal(r.Body, &page); err != nil {
		t.Fatalf("dead letters: %v %s", err, r.Body)
	}
	return page.DeadLetters
}

// scrape reads the agent's /metrics.
func scrape(t *testing.T, ta *testAgent) map[string]*dto.MetricFamily {
	t.Helper()
	r := ta.do(t, "GET", "/metrics", "", nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("/metrics: %d %s", r.Status, r.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(r.Body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return families
}

// with returns labels plus the name, value pairs kv.
func with(labels map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range labels {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// value is the value of the series of family name that has labels (among
// others): a counter's or gauge's value, a histogram's count; ok is false
// when there is no such series.
func value(families map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f := families[name]
	if f == nil {
		return 0, false
	}
	var sum float64
	found := false
	for _, m := range f.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		found = true
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum, found
}

func hasLabels(m *dto.Metric, labels map[string]string) bool {
	have := map[string]string{}
	for _, lp := range m.GetLabel() {
		have[lp.GetName()] = lp.GetValue()
	}
	for k, v := range labels {
		if have[k] != v {
			return false
		}
	}
	return true
}

// dashboardMetrics returns the opsrunner metric names the sample Grafana
// dashboard's queries use, histograms' _bucket, _sum and _count series
// named by their family.
func dashboardMetrics(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "docs", "grafana", "opsrunner.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct{ Name, Type, Query string }
		}
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	var queries []string
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			queries = append(queries, target.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if v.Type == "query" { // label_values(opsrunner_..., label)
			queries = append(queries, v.Query)
		}
	}
	name := regexp.MustCompile(`\bopsrunner_[a-z_]+`)
	var names []string
	for _, q := range queries {
		found := name.FindAllString(q, -1)
		if len(found) == 0 {
			t.Errorf("query %q names no opsrunner series", q)
		}
		for _, n := range found {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(n, suffix); ok && strings.HasSuffix(base, "_seconds") {
					n = base
				}
			}
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	if len(names) == 0 {
		t.Fatal("the dashboard queries nothing")
	}
	return names
}
