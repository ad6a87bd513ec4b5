package agent

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// Health of runs in progress.
const (
	// defaultStuckGrace is Config.StuckGrace's zero value.
	defaultStuckGrace = 5 * time.Second
	// publishAfter is how long a run goes on before it is written to the
	// store as running, for the other agents of a cluster to see it. Shorter
	// runs are written once, when they end: most runs cost one write.
	publishAfter = time.Second
)

// activeRuns is the registry of this agent's runs in progress, from the
// moment a run starts until its final record is written. Runs queries
// merge it with the store, so that a run is visible as running at once
// without a store write at every start. Safe for concurrent use; the zero
// value is empty and ready.
type activeRuns struct {
	mu   sync.Mutex
	runs map[string]*liveRun
}

// liveRun is one run in the registry.
type liveRun struct {
	reg *activeRuns
	run store.Run // as it started; never changed
	// limit is how long the run may take: its chain's time limits.
	limit time.Duration

	// mu orders the writes of the record: "running" (publish) never lands
	// after the final one.
	mu        sync.Mutex
	published bool // written to the store as running
	ended     bool
}

// start registers run, which may take up to limit; stored says its
// running record is written already (publish then writes nothing). It never
// blocks on I/O.
func (r *activeRuns) start(run store.Run, limit time.Duration, stored bool) *liveRun {
	lr := &liveRun{reg: r, run: run, limit: limit, published: stored}
	r.mu.Lock()
	if r.runs == nil {
		r.runs = map[string]*liveRun{}
	}
	r.runs[run.ID] = lr
	r.mu.Unlock()
	return lr
}

// end unregisters the run once write (nil: nothing to write) has written its
// record; a publish of the "running" record cannot follow. Idempotent.
func (lr *liveRun) end(write func()) {
	lr.mu.Lock()
	lr.ended = true
	if write != nil {
		write()
	}
	lr.mu.Unlock()
	lr.reg.mu.Lock()
	if lr.reg.runs[lr.run.ID] == lr {
		delete(lr.reg.runs, lr.run.ID)
	}
	lr.reg.mu.Unlock()
}

// publish writes the run as running with put unless it has ended or was
// already written.
func (lr *liveRun) publish(put func(store.Run)) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if lr.ended || lr.published {
		return
	}
	lr.published = true
	put(lr.run)
}

// snapshot lists the live runs at the moment of the call.
func (r *activeRuns) snapshot() []*liveRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*liveRun, 0, len(r.runs))
	for _, lr := range r.runs {
		out = append(out, lr)
	}
	return out
}

// get returns the live run id.
func (r *activeRuns) get(id string) (store.Run, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	lr, ok := r.runs[id]
	if !ok {
		return store.Run{}, false
	}
	return lr.run, true
}

// runCounts are the runs in progress, and the stuck ones among them.
type runCounts struct{ running, stuck int }

// counts counts the live runs at now: stuck are those past their time
// limit plus grace.
func (r *activeRuns) counts(now time.Time, grace time.Duration) runCounts {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := runCounts{running: len(r.runs)}
	for _, lr := range r.runs {
		if now.Sub(lr.run.StartedAt) > lr.limit+grace {
			c.stuck++
		}
	}
	return c
}

// merge adds to stored (a store answer to f, newest first) the live runs
// f selects that the store does not hold yet, keeping the order and f's
// limit. A run the store holds is taken from the store.
func (r *activeRuns) merge(stored []store.Run, f store.RunFilter) []store.Run {
	var live []store.Run
	for _, lr := range r.snapshot() {
		if f.Matches(lr.run) {
			live = append(live, lr.run)
		}
	}
	if len(live) == 0 {
		return stored
	}
	have := make(map[string]bool, len(stored))
	for _, run := range stored {
		have[run.ID] = true
	}
	out := append([]store.Run{}, stored...)
	for _, run := range live {
		if !have[run.ID] {
			out = append(out, run)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	if limit := f.PageSize(); len(out) > limit {
		out = out[:limit]
	}
	return out
}

// startRun registers a run of operation op of p as in progress; the caller
// ends it (liveRun.end) when its record is written or left to others.
func (a *Agent) startRun(run store.Run, p *scripts.Project, op string) *liveRun {
	return a.active.start(run, chainLimit(p, op), false)
}

// startStoredRun is startRun for a run already written to the store as
// running (a listener's): publishActive does not write it again.
func (a *Agent) startStoredRun(run store.Run, p *scripts.Project, op string) *liveRun {
	return a.active.start(run, chainLimit(p, op), true)
}

// publishActive writes to the store, as running, the live runs that have
// gone on for publishAfter, so that every agent of a cluster lists them; if
// this agent dies, its restart (endInterruptedRuns) or the leader
// (reapOrphanRuns) ends the records.
func (a *Agent) publishActive(ctx context.Context, now time.Time) {
	for _, lr := range a.active.snapshot() {
		if now.Sub(lr.run.StartedAt) >= publishAfter {
			lr.publish(func(run store.Run) { a.putRun(ctx, run) })
		}
	}
}

// stuckGrace is Config.StuckGrace or its default.
func (a *Agent) stuckGrace() time.Duration {
	if a.cfg.StuckGrace > 0 {
		return time.Duration(a.cfg.StuckGrace)
	}
	return defaultStuckGrace
}

// chainLimit is how long a run of operation op may take: its time limit plus
// those of the operations it chains to (onSuccess, onFailure), an upper bound
// for either path. An unknown operation has the default time limit.
func chainLimit(p *scripts.Project, op string) time.Duration {
	o, ok := p.Operation(op)
	if !ok {
		return scripts.DefaultOperationTimeout
	}
	limit := opLimit(o)
	for _, chain := range [2][]string{o.OnSuccess, o.OnFailure} {
		for _, next := range chain {
			if n, ok := p.Operation(next); ok {
				limit += opLimit(n)
			}
		}
	}
	return limit
}

// opLimit is o's time limit; an acknowledgement runs no script and takes none.
func opLimit(o *scripts.Operation) time.Duration {
	if o.Type == scripts.TypeAcknowledge {
		return 0
	}
	return o.EffectiveTimeout()
}

// longestLimit is the longest a deployed operation may hold a worker: the
// longest chainLimit, or for a listener's delivery, which holds one worker
// through its filter and every bound operation, their sum within its ack
// timeout. Zero when nothing is deployed.
func (a *Agent) longestLimit() time.Duration {
	var longest time.Duration
	for _, p := range *a.projects.Load() {
		for i := range p.Manifest.Operations {
			longest = max(longest, chainLimit(p, p.Manifest.Operations[i].Name))
		}
		for i := range p.Manifest.Listeners {
			longest = max(longest, deliveryLimit(p, &p.Manifest.Listeners[i]))
		}
	}
	return longest
}

// deliveryLimit is how long a delivery of listener l may hold its worker.
func deliveryLimit(p *scripts.Project, l *scripts.Listener) time.Duration {
	var runs time.Duration
	if l.Filter != "" {
		runs += scripts.DefaultOperationTimeout // the filter's time limit
	}
	for _, op := range l.Operations {
		runs += chainLimit(p, op)
	}
	ack := scripts.DefaultAckTimeout
	if l.AckTimeout > 0 {
		ack = time.Duration(l.AckTimeout)
	}
	return min(runs, ack)
}
