package agent

import (
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// partialVec is a metric vector whose series can be removed by some of
// their labels (prometheus.CounterVec, HistogramVec, GaugeVec).
type partialVec interface {
	prometheus.Collector
	DeletePartialMatch(labels prometheus.Labels) int
}

// prunedVec is a vector whose series name a project (label "project"),
// and perhaps one of its operations or listeners.
type prunedVec struct {
	vec partialVec
	// operation and listener are the labels naming an operation, or a
	// listener, of the project; empty when the vector has none.
	operation, listener string
}

// prunedVecs collects vectors whose series name deployed projects,
// operations and listeners, removing first the series of those no longer
// deployed: the label sets stay bounded by what is deployed (plus what
// ended since the last scrape). Goroutine-safe.
type prunedVecs struct {
	deployed func() map[string]*scripts.Project
	vecs     []prunedVec
	// pruned, when set, is called after series were removed (to drop
	// the children cached for them: runSeriesCache.forget).
	pruned func()
}

// Describe implements prometheus.Collector.
func (p *prunedVecs) Describe(ch chan<- *prometheus.Desc) {
	for _, v := range p.vecs {
		v.vec.Describe(ch)
	}
}

// Collect implements prometheus.Collector: it prunes, then collects.
func (p *prunedVecs) Collect(ch chan<- prometheus.Metric) {
	deployed := p.deployed()
	for _, v := range p.vecs {
		removed := 0
		for _, labels := range v.stale(deployed) {
			removed += v.vec.DeletePartialMatch(labels)
		}
		if removed > 0 && p.pruned != nil {
			p.pruned()
		}
		v.vec.Collect(ch)
	}
}

// stale returns the partial label sets of v's series that name a project,
// operation or listener not in deployed.
func (v prunedVec) stale(deployed map[string]*scripts.Project) []prometheus.Labels {
	ch := make(chan prometheus.Metric)
	go func() { // ends once the vector has sent all its series, which the loop drains
		v.vec.Collect(ch)
		close(ch)
	}()
	seen := map[string]bool{}
	var out []prometheus.Labels
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			continue
		}
		labels := labelMap(&pb)
		gone := staleLabels(labels, deployed, v.operation, v.listener)
		if gone == nil {
			continue
		}
		key := gone["project"] + "\x00" + gone[v.operation] + "\x00" + gone[v.listener]
		if !seen[key] {
			seen[key] = true
			out = append(out, gone)
		}
	}
	return out
}

// staleLabels returns the labels that name what is not deployed among
// labels (a series' labels): its project, or its project and the
// operation or listener; nil when all are deployed.
func staleLabels(labels map[string]string, deployed map[string]*scripts.Project, operation, listener string) prometheus.Labels {
	name := labels["project"]
	p, ok := deployed[name]
	if !ok {
		return prometheus.Labels{"project": name}
	}
	if operation != "" {
		if _, ok := p.Operation(labels[operation]); !ok {
			return prometheus.Labels{"project": name, operation: labels[operation]}
		}
	}
	if listener != "" {
		if _, ok := p.Listener(labels[listener]); !ok {
			return prometheus.Labels{"project": name, listener: labels[listener]}
		}
	}
	return nil
}

func labelMap(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// deployed returns the live project registry (not to be modified).
func (a *Agent) deployed() map[string]*scripts.Project { return *a.projects.Load() }
