package agent

import (
	"strings"
	"sync"

	"github.com/opsrunner/opsrunner/store"
	"github.com/prometheus/client_golang/prometheus"
)

// runSeriesKey names the series a finished run counts in: its labels.
type runSeriesKey struct {
	project, operation, trigger, status, listener, outcome string
}

// runSeriesOf returns the labels of run r's series. A listener's id is
// "<project>/<listener name>"; its series name the listener only.
func runSeriesOf(r *store.Run) runSeriesKey {
	k := runSeriesKey{project: r.Project, operation: r.Operation, trigger: r.Trigger, status: r.Status, outcome: r.Outcome}
	if r.Outcome != "" {
		k.listener = strings.TrimPrefix(r.Listener, r.Project+"/")
	}
	return k
}

// runSeries are the children of the run vectors one kind of run counts
// in; outcome and delivery are nil for a run without an outcome.
type runSeries struct {
	runs, outcome, delivery prometheus.Counter
	duration                prometheus.Observer
}

// runSeriesCache keeps the children of the run vectors by their labels:
// looking a child up in a vector hashes its labels and takes the vector's
// lock, four times per run, which a listener delivery did for the same
// few label sets each time. The vectors' pruning (prunedVecs) deletes
// children, which then count nowhere: it calls forget after each
// deletion, and a child looked up before a deletion is never kept after
// it (gen). Goroutine-safe; the zero value is empty.
type runSeriesCache struct {
	mu  sync.Mutex
	gen uint64 // counts forget calls
	m   map[runSeriesKey]*runSeries
}

// get returns the series of k, looking them up in m's vectors when not
// cached.
func (c *runSeriesCache) get(m *metrics, k runSeriesKey) *runSeries {
	c.mu.Lock()
	s, gen := c.m[k], c.gen
	c.mu.Unlock()
	if s != nil {
		return s
	}
	s = &runSeries{
		runs:     m.runs.WithLabelValues(k.project, k.operation, k.trigger, k.status),
		duration: m.duration.WithLabelValues(k.project, k.trigger),
	}
	if k.outcome != "" {
		s.outcome = m.outcomes.WithLabelValues(k.outcome)
		s.delivery = m.deliveries.WithLabelValues(k.project, k.listener, k.outcome)
	}
	c.mu.Lock()
	if c.gen == gen { // no deletion since the lookup: the children are live
		if c.m == nil {
			c.m = map[runSeriesKey]*runSeries{}
		}
		c.m[k] = s
	}
	c.mu.Unlock()
	return s
}

// forget drops every cached child; call it after deleting children from
// the vectors.
func (c *runSeriesCache) forget() {
	c.mu.Lock()
	c.gen++
	c.m = nil
	c.mu.Unlock()
}
