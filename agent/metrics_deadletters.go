package agent

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Dead letters are counted by a store query, at most once per
// deadLetterCountTTL whatever the scrape rate.
const (
	deadLetterCountTTL = 30 * time.Second
	// deadLetterCountLimit bounds a count by listing (a store without
	// deadLetterCounter): the gauges stop at it.
	deadLetterCountLimit = 1000
	// deadLetterCountTimeout bounds the query; past it the last counts stay.
	deadLetterCountTimeout = 5 * time.Second
)

// deadLetterCounter is implemented by stores that count their dead
// letters by project without reading them.
type deadLetterCounter interface {
	CountDeadLetters(ctx context.Context) (map[string]int, error)
}

// countDeadLetters counts the stored dead letters by project: with the
// store's count query when it has one, else by listing up to
// deadLetterCountLimit of them.
func (a *Agent) countDeadLetters(ctx context.Context) (map[string]int, error) {
	if c, ok := a.store.(deadLetterCounter); ok {
		return c.CountDeadLetters(ctx)
	}
	dls, err := a.store.DeadLetters(ctx, store.DeadLetterFilter{Limit: deadLetterCountLimit})
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for _, d := range dls {
		counts[d.Project]++
	}
	return counts, nil
}

var descDeadLetters = prometheus.NewDesc("opsrunner_dead_letters_stored",
	"Dead letters stored, by project (project=\"\": projects not deployed); counted every 30s. In a cluster every agent reports the shared store's count.",
	[]string{"project"}, nil)

// deadLetterCollector reports the dead letters stored, by deployed
// project, from counts cached for deadLetterCountTTL. Goroutine-safe;
// concurrent scrapes share one query.
type deadLetterCollector struct {
	count    func(ctx context.Context) (map[string]int, error)
	deployed func() map[string]*scripts.Project
	log      *slog.Logger

	mu      sync.Mutex // guards below; held during a query
	counted time.Time  // when counts were last queried (zero: never)
	counts  map[string]int
}

// Describe implements prometheus.Collector.
func (c *deadLetterCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descDeadLetters }

// Collect implements prometheus.Collector. It blocks for the count query
// when the cached counts are older than deadLetterCountTTL; a failed query
// is logged and the last counts stay.
func (c *deadLetterCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.cached(time.Now())
	byProject := map[string]int{}
	deployed := c.deployed()
	for name := range deployed {
		byProject[name] = 0 // a deployed project without any shows 0
	}
	for name, n := range counts {
		if _, ok := deployed[name]; !ok {
			name = "" // bounded labels: what is not deployed is one series
		}
		byProject[name] += n
	}
	for name, n := range byProject {
		ch <- prometheus.MustNewConstMetric(descDeadLetters, prometheus.GaugeValue, float64(n), name)
	}
}

// cached returns the counts, querying them again when they are older
// than deadLetterCountTTL at now.
func (c *deadLetterCollector) cached(now time.Time) map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.counted.IsZero() && now.Sub(c.counted) < deadLetterCountTTL {
		return c.counts
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadLetterCountTimeout)
	defer cancel()
	counts, err := c.count(ctx)
	c.counted = now // a failure too waits the TTL before the next try
	if err != nil {
		c.log.Warn("count dead letters for /metrics", "error", err)
		return c.counts
	}
	c.counts = counts
	return counts
}
