package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/opsrunner/opsrunner/broker"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// projectOf builds a project with operations ops and listeners ls.
func projectOf(name string, ops, ls []string) *scripts.Project {
	m := &scripts.Manifest{Project: name}
	for _, o := range ops {
		m.Operations = append(m.Operations, scripts.Operation{Name: o})
	}
	for _, l := range ls {
		m.Listeners = append(m.Listeners, scripts.Listener{Name: l})
	}
	return &scripts.Project{Name: name, Manifest: m}
}

// Series of a project, operation or listener no longer deployed are gone
// at the next scrape; the others stay with their values.
func TestPrunedVecsKeepOnlyWhatIsDeployed(t *testing.T) {
	runs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "runs_total", Help: "h"}, []string{"project", "operation"})
	deliveries := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deliveries_total", Help: "h"}, []string{"project", "listener"})
	deployed := map[string]*scripts.Project{
		"a": projectOf("a", []string{"x", "y"}, []string{"in"}),
		"b": projectOf("b", []string{"z"}, nil),
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(&prunedVecs{
		deployed: func() map[string]*scripts.Project { return deployed },
		vecs:     []prunedVec{{vec: runs, operation: "operation"}, {vec: deliveries, listener: "listener"}},
	})
	runs.WithLabelValues("a", "x").Add(2)
	runs.WithLabelValues("a", "y").Inc()
	runs.WithLabelValues("b", "z").Inc()
	deliveries.WithLabelValues("a", "in").Inc()

	series := func() string {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, f := range families {
			for _, m := range f.GetMetric() {
				l := labelMap(m)
				out = append(out, fmt.Sprintf("%s %s/%s%s=%v", f.GetName(), l["project"], l["operation"], l["listener"], m.GetCounter().GetValue()))
			}
		}
		sort.Strings(out)
		return strings.Join(out, "; ")
	}
	if got, want := series(), "deliveries_total a/in=1; runs_total a/x=2; runs_total a/y=1; runs_total b/z=1"; got != want {
		t.Fatalf("all deployed: %s, want %s", got, want)
	}
	// a is redeployed without y and its listener; b is deleted.
	deployed = map[string]*scripts.Project{"a": projectOf("a", []string{"x"}, nil)}
	if got, want := series(), "runs_total a/x=2"; got != want {
		t.Fatalf("after the redeploy: %s, want %s", got, want)
	}
	ch := make(chan prometheus.Metric, 10)
	runs.Collect(ch) // the vector itself, not through the pruning collector
	if n := len(ch); n != 1 {
		t.Errorf("runs vector holds %d series, want 1: pruned series must be deleted, not only hidden", n)
	}
}

// A run counts in its series also when they were pruned since the last
// run of the same kind: the children cached for observe are dropped with
// the series.
func TestObserveCountsAfterItsSeriesWerePruned(t *testing.T) {
	m := &metrics{
		runs:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "runs_total", Help: "h"}, []string{"project", "operation", "trigger", "status"}),
		duration:   prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "duration_seconds", Help: "h"}, []string{"project", "trigger"}),
		outcomes:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outcomes_total", Help: "h"}, []string{"outcome"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deliveries_total", Help: "h"}, []string{"project", "listener", "outcome"}),
	}
	deployed := map[string]*scripts.Project{"b": projectOf("b", []string{"z"}, []string{"in"})}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(&prunedVecs{
		deployed: func() map[string]*scripts.Project { return deployed },
		pruned:   m.series.forget,
		vecs:     []prunedVec{{vec: m.runs, operation: "operation"}, {vec: m.duration}, {vec: m.deliveries, listener: "listener"}},
	})
	run := store.Run{Project: "b", Operation: "z", Trigger: "listener", Status: store.StatusSucceeded, Listener: "b/in", Outcome: store.OutcomeCommitted}
	counts := func() string {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, f := range families {
			for _, s := range f.GetMetric() {
				n := s.GetCounter().GetValue() + float64(s.GetHistogram().GetSampleCount())
				out = append(out, fmt.Sprintf("%s=%v", f.GetName(), n))
			}
		}
		sort.Strings(out)
		return strings.Join(out, " ")
	}
	m.observe(run)
	m.observe(run)
	if got, want := counts(), "deliveries_total=2 duration_seconds=2 runs_total=2"; got != want {
		t.Fatalf("deployed: %s, want %s", got, want)
	}
	deployed = map[string]*scripts.Project{} // b deleted: its series go
	if got := counts(); got != "" {
		t.Fatalf("after b's deletion: %s, want none", got)
	}
	deployed = map[string]*scripts.Project{"b": projectOf("b", []string{"z"}, []string{"in"})}
	m.observe(run)
	if got, want := counts(), "deliveries_total=1 duration_seconds=1 runs_total=1"; got != want {
		t.Fatalf("b deployed again: %s, want %s", got, want)
	}
}

// Runs observed while scrapes prune their series race with nothing (run
// with -race), and once the pruning stops every run counts.
func TestObserveWhilePruning(t *testing.T) {
	m := &metrics{
		runs:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "runs_total", Help: "h"}, []string{"project", "operation", "trigger", "status"}),
		duration:   prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "duration_seconds", Help: "h"}, []string{"project", "trigger"}),
		outcomes:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outcomes_total", Help: "h"}, []string{"outcome"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deliveries_total", Help: "h"}, []string{"project", "listener", "outcome"}),
	}
	var deployedMu sync.Mutex
	deployed := map[string]*scripts.Project{}
	pv := &prunedVecs{
		deployed: func() map[string]*scripts.Project {
			deployedMu.Lock()
			defer deployedMu.Unlock()
			return deployed
		},
		pruned: m.series.forget,
		vecs:   []prunedVec{{vec: m.runs, operation: "operation"}, {vec: m.duration}, {vec: m.deliveries, listener: "listener"}},
	}
	run := store.Run{Project: "b", Operation: "z", Trigger: "listener", Status: store.StatusSucceeded, Listener: "b/in", Outcome: store.OutcomeCommitted}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 500 {
				m.observe(run)
			}
		})
	}
	for range 20 { // b is not deployed: each scrape prunes what was observed
		ch := make(chan prometheus.Metric, 100)
		go func() { pv.Collect(ch); close(ch) }()
		for range ch {
		}
	}
	wg.Wait()
	deployedMu.Lock()
	deployed = map[string]*scripts.Project{"b": projectOf("b", []string{"z"}, []string{"in"})}
	deployedMu.Unlock()
	m.runs.Reset()
	m.series.forget()
	for range 3 {
		m.observe(run)
	}
	var pb dto.Metric
	if err := m.runs.WithLabelValues("b", "z", "listener", store.StatusSucceeded).Write(&pb); err != nil {
		t.Fatal(err)
	}
	if n := pb.GetCounter().GetValue(); n != 3 {
		t.Fatalf("runs counted after the pruning: %v, want 3", n)
	}
}

// The broker's destinations are reported up to a cap: the busiest ones.
func TestBusiestCapsTheDestinations(t *testing.T) {
	all := []broker.DestinationStats{
		{Destination: "/queue/a", Pending: 1},
		{Destination: "/queue/b", Pending: 5},
		{Destination: "/queue/c", InFlight: 3},
		{Destination: "/queue/d"},
	}
	got := busiest(all, 2)
	if len(got.all) != 4 || len(got.kept) != 2 || got.kept[0].Destination != "/queue/b" || got.kept[1].Destination != "/queue/c" {
		t.Fatalf("busiest = %+v", got)
	}
	if got := busiest(all, 10); len(got.kept) != 4 {
		t.Fatalf("under the cap every destination is kept: %+v", got.kept)
	}
}

// Dead letters are counted at most once per TTL whatever the scrape rate;
// a failed count keeps the last counts; letters of projects not deployed
// are one series, and a deployed project without any shows 0.
func TestDeadLetterCountsAreCachedAndBounded(t *testing.T) {
	queries := 0
	var fail error
	c := &deadLetterCollector{
		count: func(context.Context) (map[string]int, error) {
			queries++
			return map[string]int{"a": 2, "gone": 1, "also-gone": 4}, fail
		},
		deployed: func() map[string]*scripts.Project {
			return map[string]*scripts.Project{"a": projectOf("a", nil, nil), "b": projectOf("b", nil, nil)}
		},
		log: slog.New(slog.DiscardHandler),
	}
	gauges := func() map[string]float64 {
		ch := make(chan prometheus.Metric, 10)
		c.Collect(ch)
		close(ch)
		out := map[string]float64{}
		for m := range ch {
			var pb dto.Metric
			if err := m.Write(&pb); err != nil {
				t.Fatal(err)
			}
			out[labelMap(&pb)["project"]] = pb.GetGauge().GetValue()
		}
		return out
	}
	want := map[string]float64{"a": 2, "b": 0, "": 5}
	if got := gauges(); !maps.Equal(got, want) {
		t.Fatalf("gauges = %v, want %v", got, want)
	}
	gauges()
	if queries != 1 {
		t.Fatalf("%d queries for two scrapes within the TTL, want 1", queries)
	}
	c.counted = c.counted.Add(-deadLetterCountTTL) // the TTL has passed
	fail = errors.New("store down")
	if got := gauges(); queries != 2 || !maps.Equal(got, want) {
		t.Fatalf("after a failed count: %d queries, gauges %v; want 2 and the last counts", queries, got)
	}
}
