package agent

import (
	"net/http"

	"github.com/opsrunner/opsrunner/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the agent's Prometheus series, on a registry of its own.
type metrics struct {
	reg      *prometheus.Registry
	runs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	outcomes *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opsrunner_runs_total", Help: "Runs finished, by trigger and status.",
		}, []string{"trigger", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "opsrunner_run_duration_seconds", Help: "Run durations, by trigger.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"trigger"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opsrunner_delivery_outcomes_total", Help: "Delivery settlements, by outcome.",
		}, []string{"outcome"}),
	}
	m.reg.MustRegister(m.runs, m.duration, m.outcomes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observe(r store.Run) {
	if r.Outcome != "" {
		m.outcomes.WithLabelValues(r.Outcome).Inc()
	}
	m.runs.WithLabelValues(r.Trigger, r.Status).Inc()
	m.duration.WithLabelValues(r.Trigger).Observe(r.DurationMs / 1000)
}

// Metrics serves the Prometheus exposition (api.Backend).
func (a *Agent) Metrics() http.Handler {
	return promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{})
}
