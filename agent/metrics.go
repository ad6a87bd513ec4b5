package agent

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/opsrunner/opsrunner/broker"
	"github.com/opsrunner/opsrunner/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the agent's Prometheus series, on a registry of its own
// (docs/operations.md lists them). Names follow Prometheus conventions:
// the opsrunner_ prefix, _total on counters, base units in the name.
//
// Label sets are bounded. trigger, status and outcome take a few fixed
// values. project, operation and listener name only what is deployed:
// their series are removed at the scrape after a project is deleted or
// redeployed without them (prunedVecs). Broker destinations are capped
// (maxBrokerDestinations).
type metrics struct {
	// reg is the registry /metrics serves; other files of the agent
	// register their own collectors on it.
	reg *prometheus.Registry
	// runs counts finished runs by project, operation, trigger and
	// status; duration observes them by project and trigger.
	runs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// outcomes counts run records settled by a delivery, by outcome only
	// (kept from the first version, for its dashboards); deliveries
	// counts the same by project, listener and outcome.
	outcomes   *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	// series caches the children of runs, duration, outcomes and
	// deliveries that finished runs count in.
	series runSeriesCache
	// flush observes the store's group commits (bbolt only).
	flush prometheus.Histogram
	// logAppend observes the store's run log appends (bbolt with
	// run_durability sync only).
	logAppend prometheus.Histogram
	// broker is the embedded broker whose destinations are reported; nil
	// until it starts, and when none runs.
	broker atomic.Pointer[broker.Broker]
}

// runDurationBuckets span half a millisecond to about two minutes.
var runDurationBuckets = prometheus.ExponentialBuckets(0.0005, 4, 10)

// newMetrics returns the agent's series, the gauges reading a's state on
// each scrape.
func newMetrics(a *Agent) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opsrunner_runs_total", Help: "Runs finished, by project, operation, trigger and status.",
		}, []string{"project", "operation", "trigger", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "opsrunner_run_duration_seconds", Help: "Run durations, by project and trigger.",
			Buckets: runDurationBuckets,
		}, []string{"project", "trigger"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opsrunner_delivery_outcomes_total", Help: "Operations' settlements of listener deliveries, by outcome.",
		}, []string{"outcome"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opsrunner_listener_deliveries_total",
			Help: "Operations' settlements of listener deliveries, by project, listener and outcome.",
		}, []string{"project", "listener", "outcome"}),
		flush: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "opsrunner_store_flush_duration_seconds", Help: "Writes of buffered runs to the bbolt store (group commits, fsync included).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9),
		}),
		logAppend: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "opsrunner_store_log_append_duration_seconds",
			Help:    "Appends of runs to the bbolt store's run log (group commits, fdatasync included), which sync webhooks and deliveries wait for.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 4, 9),
		}),
	}
	m.reg.MustRegister(
		&prunedVecs{deployed: a.deployed, pruned: m.series.forget, vecs: []prunedVec{
			{vec: m.runs, operation: "operation"},
			{vec: m.duration},
			{vec: m.deliveries, listener: "listener"},
		}},
		m.outcomes, m.flush, m.logAppend,
		&stateCollector{a: a},
		&deadLetterCollector{count: a.countDeadLetters, deployed: a.deployed, log: a.log},
		&brokerCollector{broker: &m.broker},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// observe counts a finished run, and its delivery's settlement when it
// has an outcome.
func (m *metrics) observe(r store.Run) {
	s := m.series.get(m, runSeriesOf(&r))
	if s.outcome != nil {
		s.outcome.Inc()
		s.delivery.Inc()
	}
	s.runs.Inc()
	s.duration.Observe(r.DurationMs / 1000)
}

// observeFlush is the store's flush hook (store.BoltOptions.OnFlush).
func (m *metrics) observeFlush(_ int, took time.Duration, _ error) {
	m.flush.Observe(took.Seconds())
}

// observeLogAppend is the store's run log hook (store.BoltOptions.OnLogAppend).
func (m *metrics) observeLogAppend(_ int, took time.Duration, _ error) {
	m.logAppend.Observe(took.Seconds())
}

// Metrics serves the Prometheus exposition (api.Backend).
func (a *Agent) Metrics() http.Handler {
	return promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{})
}
