package agent

import "github.com/prometheus/client_golang/prometheus"

// stateCollector reports the agent's state as gauges, read on each
// scrape: runs in progress and busy workers, quorum and leadership.
type stateCollector struct{ a *Agent }

var (
	descRunsInProgress = prometheus.NewDesc("opsrunner_runs_in_progress",
		"Runs in progress on this agent, those waiting (for I/O, a worker, a result) included.", nil, nil)
	descRunsInProgressLimit = prometheus.NewDesc("opsrunner_runs_in_progress_limit",
		"max_inflight: the runs in progress this agent takes at most.", nil, nil)
	descWorkersBusy = prometheus.NewDesc("opsrunner_workers_busy",
		"Workers executing JavaScript.", nil, nil)
	descWorkers = prometheus.NewDesc("opsrunner_workers",
		"Workers: the runs executing JavaScript at once at most.", nil, nil)
	descQuorumOK = prometheus.NewDesc("opsrunner_cluster_quorum_ok",
		"1 when enough agents are live for listeners to listen (quorum), else 0.", nil, nil)
	descLiveAgents = prometheus.NewDesc("opsrunner_cluster_live_agents",
		"Live agents as this agent last saw them; 0 while the coordinator is unreachable.", nil, nil)
	descRequiredAgents = prometheus.NewDesc("opsrunner_cluster_required_agents",
		"Live agents quorum requires: cluster_size/2+1.", nil, nil)
	descLeader = prometheus.NewDesc("opsrunner_cluster_leader",
		"1 when this agent is the cluster's leader (it runs the cluster's singleton chores), else 0.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRunsInProgress, descRunsInProgressLimit, descWorkersBusy, descWorkers,
		descQuorumOK, descLiveAgents, descRequiredAgents, descLeader} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. It does not block: the cluster
// figures are those of the last heartbeat (every second).
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	gauge(descRunsInProgress, float64(a.slots.InFlight()))
	gauge(descRunsInProgressLimit, float64(a.slots.Capacity()))
	gauge(descWorkersBusy, float64(a.workers.InFlight()))
	gauge(descWorkers, float64(a.workers.Capacity()))

	members, _, err := a.view.get()
	q := a.quorum(len(members))
	if err != nil {
		q = a.quorum(0)
	}
	gauge(descQuorumOK, boolGauge(q.OK))
	gauge(descLiveAgents, float64(q.Live))
	gauge(descRequiredAgents, float64(q.Required))
	gauge(descLeader, boolGauge(a.isLeader()))
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
