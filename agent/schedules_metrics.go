package agent

import "github.com/prometheus/client_golang/prometheus"

// scheduleMetrics are the schedules' series, by project and schedule:
// ticks fired (run by this agent), ticks skipped (missed: counted by the
// cluster's leader, so once in the cluster), and how late ticks started.
type scheduleMetrics struct {
	fired   *prometheus.CounterVec
	skipped *prometheus.CounterVec
	late    *prometheus.HistogramVec
}

// newScheduleMetrics makes the series and registers them on reg.
func newScheduleMetrics(reg prometheus.Registerer) *scheduleMetrics {
	labels := []string{"project", "schedule"}
	m := &scheduleMetrics{
		fired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opsrunner_schedule_ticks_fired_total", Help: "Schedule ticks this agent ran, by project and schedule.",
		}, labels),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opsrunner_schedule_ticks_skipped_total", Help: "Schedule ticks missed and not run (counted by the cluster's leader), by project and schedule.",
		}, labels),
		late: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "opsrunner_schedule_tick_lateness_seconds", Help: "Seconds from a tick's due time to the start of its run, by project and schedule.",
			Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, labels),
	}
	reg.MustRegister(m.fired, m.skipped, m.late)
	return m
}
