package agent

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/opsrunner/opsrunner/cluster"
	"github.com/opsrunner/opsrunner/runtime"
	"github.com/opsrunner/opsrunner/schedules"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// How schedules run in the cluster (docs/schedules.md explains them to
// users):
//
// Every agent computes each enabled schedule's ticks (they are the same
// on every agent) and, at each tick, tries to claim it: the claim is a
// lease on the schedule (on the tick when overlap is allowed) through the
// coordinator, and a processed marker keyed by the schedule id and the
// tick's Unix time says the tick is done. The least-loaded agent tries
// first: each agent waits its load rank times rankStep before its first
// attempt, so the others find the tick processed and do nothing. An agent
// that holds the lease writes a started marker, runs the operations,
// writes the processed marker, then releases. An agent that dies mid-run
// stops refreshing its lease; once it lapses another agent, still
// retrying, finds the tick started but not processed and runs it.
const (
	// triggerSchedule is the trigger of the runs of schedules.
	triggerSchedule = "schedule"
	// scheduleLeaseTTL is the claim's lease, refreshed every third of it
	// while the tick runs: how soon a tick of a dead agent is taken over.
	scheduleLeaseTTL = 2 * time.Second
	// rankStep is how much later each next less-loaded agent tries a tick.
	rankStep = 100 * time.Millisecond
	// retryEvery is how often a tick whose lease is held is tried again.
	retryEvery = 100 * time.Millisecond
	// startGrace is how long a tick waits for its schedule's previous run
	// (still going) to end: one that cannot start by then is missed.
	startGrace = time.Second
	// maxTakeover bounds how long agents wait for a started tick to be
	// processed (taking it over when its holder's lease lapses).
	maxTakeover = 10 * time.Minute
	// markerRetention keeps processed and started markers well past any
	// attempt at their tick.
	markerRetention = time.Hour
	// reconcileEvery is how often the set of running schedules is brought
	// in line with projects, states and quorum (state changes reach the
	// agent through the store's notifications, which reset its cache).
	reconcileEvery = 200 * time.Millisecond
)

// scheduleKey is a schedule's state key in the store.
func scheduleKey(id string) string { return "schedule:" + id }

// scheduleEntry is one schedule of a live project.
type scheduleEntry struct {
	id      string
	project *scripts.Project
	s       *scripts.Schedule
	clock   schedules.Clock
}

// tickKey names a tick cluster-wide: the schedule and the tick's time.
func (e scheduleEntry) tickKey(due time.Time) string {
	return "schedule:" + e.id + "@" + strconv.FormatInt(due.Unix(), 10)
}

// lockKey is what a tick's claim leases: the schedule, so that its runs
// never overlap, or the tick itself when overlap is allowed.
func (e scheduleEntry) lockKey(due time.Time) string {
	if e.s.Overlap {
		return e.tickKey(due)
	}
	return "schedule:" + e.id
}

// scheduleEntries lists the schedules of the live projects, by id.
func (a *Agent) scheduleEntries() []scheduleEntry {
	return a.scheduleEntriesOf(a.projects.Load())
}

// scheduleEntriesOf lists the schedules of projects, by id.
func (a *Agent) scheduleEntriesOf(projects *map[string]*scripts.Project) []scheduleEntry {
	var out []scheduleEntry
	for _, p := range *projects {
		for i := range p.Manifest.Schedules {
			s := &p.Manifest.Schedules[i]
			clock, err := s.Clock()
			if err != nil { // validated at deploy: not expected
				a.log.Error("schedule has no clock; skipped", "project", p.Name, "schedule", s.Name, "error", err)
				continue
			}
			out = append(out, scheduleEntry{id: listenerID(p.Name, s.Name), project: p, s: s, clock: clock})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// scheduleEnabled reads a schedule's state; a schedule never toggled
// takes the manifest's `enabled` (default true).
func (a *Agent) scheduleEnabled(ctx context.Context, e scheduleEntry) bool {
	on, ok, err := a.states.get(ctx, a.store, scheduleKey(e.id))
	if err != nil {
		a.log.Warn("read schedule state", "schedule", e.id, "error", err)
	}
	if ok {
		return on
	}
	return e.s.Enabled == nil || *e.s.Enabled
}

// scheduler runs a tick loop per enabled schedule of the live projects
// while the agent takes work (the cluster has quorum). Its loops and
// tick attempts are goroutines of wg; run ends them all.
type scheduler struct {
	a     *Agent
	m     *scheduleMetrics
	loops map[string]*tickLoop // by schedule id; only run's goroutine uses it
	wg    sync.WaitGroup

	// entries are the schedules of projects, the live projects when last
	// read: parsing clocks (zones load from the zone database) is done
	// again only when the projects change. Only run's goroutine uses them.
	projects *map[string]*scripts.Project
	entries  []scheduleEntry
}

// tickLoop is a running schedule loop, for one version of its project.
type tickLoop struct {
	version int
	cancel  context.CancelFunc
	newest  *newestTick
}

func newScheduler(a *Agent, m *scheduleMetrics) *scheduler {
	return &scheduler{a: a, m: m, loops: map[string]*tickLoop{}}
}

// run keeps the schedule loops in line with projects, states and quorum
// until ctx ends, then waits for its goroutines (runs in progress are the
// agent's background runs: shutdown waits for those).
func (s *scheduler) run(ctx context.Context) {
	t := time.NewTicker(reconcileEvery)
	defer t.Stop()
	for {
		s.reconcile(ctx)
		select {
		case <-ctx.Done():
			for _, l := range s.loops {
				l.cancel()
			}
			s.wg.Wait()
			return
		case <-t.C:
		}
	}
}

// reconcile stops the loops of schedules gone, disabled, redeployed or
// paused (no quorum), and starts the loops of enabled schedules.
func (s *scheduler) reconcile(ctx context.Context) {
	if cur := s.a.projects.Load(); cur != s.projects {
		s.projects, s.entries = cur, s.a.scheduleEntriesOf(cur)
	}
	want := map[string]scheduleEntry{}
	if !s.a.view.isPaused() {
		for _, e := range s.entries {
			if s.a.scheduleEnabled(ctx, e) {
				want[e.id] = e
			}
		}
	}
	for id, l := range s.loops {
		if e, ok := want[id]; !ok || e.project.Version != l.version {
			l.cancel()
			delete(s.loops, id)
		}
	}
	for id, e := range want {
		if _, ok := s.loops[id]; ok {
			continue
		}
		lctx, cancel := context.WithCancel(ctx)
		l := &tickLoop{version: e.project.Version, cancel: cancel, newest: &newestTick{}}
		s.loops[id] = l
		s.wg.Go(func() { s.loop(lctx, e, l.newest) })
	}
}

// newestTick is the latest tick a loop has started attempting: with
// catchUp one, only that one waits for the schedule's previous run.
type newestTick struct {
	mu  sync.Mutex
	due time.Time
}

func (n *newestTick) set(t time.Time) {
	n.mu.Lock()
	n.due = t
	n.mu.Unlock()
}

func (n *newestTick) is(t time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.due.Equal(t)
}

// loop attempts each tick of e from now on, each on a goroutine of its own
// (a tick may wait for a lease while the next comes due), until ctx ends.
// With catchUp one it first attempts the last tick missed while the
// schedule was not running anywhere.
func (s *scheduler) loop(ctx context.Context, e scheduleEntry, newest *newestTick) {
	if e.s.CatchUp == scripts.CatchUpOne {
		if due, ok := s.missedTick(ctx, e); ok {
			newest.set(due)
			s.wg.Go(func() { s.attempt(ctx, e, due, newest, true) })
		}
	}
	after := time.Now()
	for {
		due := e.clock.Next(after)
		if due.IsZero() {
			return
		}
		if superseded(e, due) { // the agent stalled past it: the newer tick runs instead
			after = due
			continue
		}
		if !sleepUntil(ctx, due.Add(s.a.claimDelay())) {
			return
		}
		newest.set(due)
		s.wg.Go(func() { s.attempt(ctx, e, due, newest, false) })
		after = due
	}
}

// missedTick is the last tick before now when the schedule has run before
// and not since that tick (nor for it): what catchUp one runs on start.
func (s *scheduler) missedTick(ctx context.Context, e scheduleEntry) (time.Time, bool) {
	prev := schedules.Prev(e.clock, time.Now().Add(-startGrace))
	if prev.IsZero() {
		return time.Time{}, false
	}
	runs, err := s.a.store.Runs(ctx, store.RunFilter{Project: e.project.Name, Trigger: triggerSchedule, Schedule: e.s.Name, Limit: 1})
	if err != nil {
		s.a.log.Warn("catch-up: read the schedule's last run", "schedule", e.id, "error", err)
		return time.Time{}, false
	}
	if len(runs) == 0 || !runs[0].StartedAt.Before(prev) {
		return time.Time{}, false // never ran (a new schedule), or ran since
	}
	if last := runs[0].ScheduledAt; last != nil && !last.Before(prev) {
		return time.Time{}, false
	}
	return prev, true
}

// sleepUntil waits until t or the end of ctx; false when ctx ended.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// claimDelay is how long this agent waits after a tick's time before
// trying it: rankStep for each live agent less loaded than this one (ties
// go to the lower id), the most when this agent has no room for a run.
func (a *Agent) claimDelay() time.Duration {
	members, _, err := a.view.get()
	if err != nil || len(members) < 2 {
		return 0
	}
	if a.slots.Free() == 0 || a.workers.Free() == 0 {
		return time.Duration(len(members)) * rankStep
	}
	self, rank := a.ownLoad(), 0
	for _, m := range members {
		if m.ID == a.cfg.AgentID || time.Since(m.LastSeen) > 3*time.Second {
			continue
		}
		if l := memberLoad(m); l < self || (l == self && m.ID < a.cfg.AgentID) {
			rank++
		}
	}
	return time.Duration(rank) * rankStep
}

// attempt tries the tick due of e until it is processed (here or
// elsewhere), missed, or too old, or ctx ends. A catch-up attempt is not
// missed for being late.
func (s *scheduler) attempt(ctx context.Context, e scheduleEntry, due time.Time, newest *newestTick, catchUp bool) {
	coord := s.a.coord
	key := e.tickKey(due)
	for ctx.Err() == nil && time.Since(due) < maxTakeover {
		if done, err := coord.Processed(ctx, key); err == nil && done {
			return
		}
		lease, err := coord.Acquire(ctx, e.lockKey(due), scheduleLeaseTTL)
		switch {
		case errors.Is(err, cluster.ErrHeld):
			if s.gaveUp(ctx, e, due, newest, catchUp) {
				return
			}
		case err != nil:
			if ctx.Err() == nil {
				s.a.log.Warn("schedule: claim tick", "schedule", e.id, "tick", due, "error", err)
			}
		default:
			if s.claimed(ctx, e, due, lease, newest, catchUp) {
				return
			}
		}
		if !sleepUntil(ctx, time.Now().Add(retryEvery)) {
			return
		}
	}
}

// gaveUp decides, while another holder has the tick's lease, whether to
// stop trying: not while the tick has started (its holder may die and it
// is then taken over); yes once it is missed.
func (s *scheduler) gaveUp(ctx context.Context, e scheduleEntry, due time.Time, newest *newestTick, catchUp bool) bool {
	if time.Since(due) < startGrace || catchUp {
		return false
	}
	if started, err := s.a.coord.Processed(ctx, e.tickKey(due)+":started"); err != nil || started {
		return false
	}
	return s.missed(e, due, newest)
}

// missed reports whether a tick that cannot start on time is given up:
// with catchUp skip always; with catchUp one unless it is the newest
// tick, the one catch-up run for those missed while the previous run went.
func (s *scheduler) missed(e scheduleEntry, due time.Time, newest *newestTick) bool {
	if e.s.CatchUp == scripts.CatchUpOne && newest.is(due) {
		return false
	}
	if s.a.isLeader() { // counted once in the cluster
		s.m.skipped.WithLabelValues(e.project.Name, e.s.Name).Inc()
	}
	return true
}

// superseded reports whether the tick after due is due already: a tick
// not started by then is missed, whatever kept it (a slow or stalled
// agent), and the newer one runs instead.
func superseded(e scheduleEntry, due time.Time) bool {
	next := e.clock.Next(due)
	return !next.IsZero() && !next.After(time.Now())
}

// claimed handles a tick whose lease this agent holds: done when the tick
// is processed already; missed when a newer tick is due (ticks blocked by
// the schedule's previous run are missed sooner, see gaveUp); else it runs,
// late maybe (a tick started elsewhere and not processed is taken over).
// It reports whether the attempt is over; the lease is released either way.
func (s *scheduler) claimed(ctx context.Context, e scheduleEntry, due time.Time, lease cluster.Lease, newest *newestTick, catchUp bool) bool {
	coord, key := s.a.coord, e.tickKey(due)
	done, err := coord.Processed(ctx, key)
	var started bool
	if err == nil && !done {
		started, err = coord.Processed(ctx, key+":started")
	}
	if err != nil || done {
		_ = lease.Release(context.WithoutCancel(ctx))
		return done
	}
	if !started && !catchUp && superseded(e, due) && s.missed(e, due, newest) {
		_ = lease.Release(context.WithoutCancel(ctx))
		return true
	}
	if err := coord.MarkProcessed(ctx, key+":started", markerRetention); err != nil {
		_ = lease.Release(context.WithoutCancel(ctx))
		return false
	}
	s.runTick(e, due, lease)
	return true
}

// runTick runs the tick's operations, in order, as background runs of the
// agent (in a max_inflight slot; shutdown waits for them), then marks the
// tick processed and releases its lease. Losing the lease cancels the
// runs: another agent may take the tick over.
func (s *scheduler) runTick(e scheduleEntry, due time.Time, lease cluster.Lease) {
	a := s.a
	a.bg.Add(1)
	defer a.bg.Done()
	defer func() { _ = lease.Release(context.Background()) }()
	if err := a.slots.Acquire(a.bgCtx); err != nil {
		return
	}
	defer a.slots.Release()
	ctx, cancel := context.WithCancel(a.bgCtx)
	defer cancel()
	stop := lease.AfterLost(cancel)
	defer stop()

	fired := time.Now().UTC()
	s.m.fired.WithLabelValues(e.project.Name, e.s.Name).Inc()
	s.m.late.WithLabelValues(e.project.Name, e.s.Name).Observe(fired.Sub(due).Seconds())
	dueUTC := due.UTC()
	for _, op := range e.s.Operations {
		run := a.newRun(newRunID(), e.project, op, triggerSchedule)
		run.Schedule, run.ScheduledAt = e.s.Name, &dueUTC
		a.execute(ctx, run, scheduleInvocation(e, op, dueUTC, fired), keepBoundedResult)
	}
	if ctx.Err() != nil {
		a.log.Warn("schedule: tick's lease lost or agent stopping; not marked processed", "schedule", e.id, "tick", dueUTC)
		return
	}
	if err := a.coord.MarkProcessed(context.Background(), e.tickKey(due), markerRetention); err != nil {
		a.log.Error("schedule: mark tick processed", "schedule", e.id, "tick", dueUTC, "error", err)
	}
}

// scheduleInvocation is the run of op for a tick due (or a run-now) fired
// at fired: the event scripts see.
func scheduleInvocation(e scheduleEntry, op string, due, fired time.Time) runtime.Invocation {
	var body any
	if len(e.s.Input) > 0 {
		body = json.RawMessage(e.s.Input)
	}
	event := map[string]any{
		"trigger":     triggerSchedule,
		"schedule":    e.s.Name,
		"scheduledAt": due.Format(time.RFC3339Nano),
		"firedAt":     fired.Format(time.RFC3339Nano),
		"body":        body,
	}
	return runtime.Invocation{Project: e.project, Operation: op, Trigger: triggerSchedule, Event: event}
}
