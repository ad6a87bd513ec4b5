package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/opsrunner/opsrunner/api"
	"github.com/opsrunner/opsrunner/cluster"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
	"github.com/opsrunner/opsrunner/triggers"
)

// clusterView is what the agent last learned about its cluster, refreshed
// by every heartbeat. The zero value means "not known yet".
type clusterView struct {
	mu      sync.Mutex
	members []cluster.Member // live, oldest first
	leader  string
	err     error // the last heartbeat's or membership read's failure
	paused  bool
}

func (v *clusterView) set(members []cluster.Member, leader string, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.members, v.leader, v.err = members, leader, err
}

func (v *clusterView) isPaused() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.paused
}

func (v *clusterView) get() ([]cluster.Member, string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.members, v.leader, v.err
}

// leaderChecker is implemented by coordinators that elect a leader.
type leaderChecker interface{ IsLeader() bool }

// isLeader reports whether this agent runs the cluster's singleton chores.
func (a *Agent) isLeader() bool {
	if lc, ok := a.coord.(leaderChecker); ok {
		return lc.IsLeader()
	}
	return true
}

// tick is one round of cluster chores: heartbeat, membership, quorum gate,
// placement, and (on the leader) retention sweeps.
func (a *Agent) tick(ctx context.Context, lastSweep *time.Time) {
	runs := a.active.counts(time.Now(), a.stuckGrace())
	m := cluster.Member{
		ID:          a.cfg.AgentID,
		Address:     a.advertiseAddr(),
		Capacity:    a.workers.Capacity(),
		InFlight:    a.workers.InFlight(),
		MaxInflight: a.slots.Capacity(),
		Version:     Version,
		StartedAt:   a.started,
		LastSeen:    time.Now().UTC(),
		Running:     runs.running,
		StuckRuns:   runs.stuck,
	}
	err := a.coord.Heartbeat(ctx, m)
	var members []cluster.Member
	var leader string
	if err == nil {
		members, leader, err = a.coord.Members(ctx)
	}
	if ctx.Err() != nil {
		return
	}
	sort.Slice(members, func(i, j int) bool { return members[i].StartedAt.Before(members[j].StartedAt) })
	old, _, _ := a.view.get()
	a.view.set(members, leader, err)

	// Without the coordinator, or below quorum, single processing cannot be
	// promised: listeners pause (unsubscribe) until it is back.
	pause := err != nil || !a.quorum(len(members)).OK
	a.view.mu.Lock()
	changed := pause != a.view.paused
	a.view.paused = pause
	a.view.mu.Unlock()
	if changed {
		if pause {
			a.log.Warn("listeners paused", "reason", pauseReason(err, a.quorum(len(members))))
		} else {
			a.log.Info("listeners resumed", "members", len(members))
		}
		a.listeners.SetPaused(pause)
	}
	if err != nil {
		return
	}
	if !sameIDs(old, members) {
		a.applyListeners() // reservation placement follows membership
	}
	if a.isLeader() && time.Since(*lastSweep) > time.Minute {
		*lastSweep = time.Now()
		if err := a.store.Sweep(ctx, time.Now()); err != nil && ctx.Err() == nil {
			a.log.Warn("retention sweep", "error", err)
		}
		a.reapOrphanRuns(ctx, members)
	}
}

// reapOrphanRuns closes the records of runs whose agent died while running
// them (dead-member cleanup): they failed, and a delivery they handled was
// given back by the broker.
func (a *Agent) reapOrphanRuns(ctx context.Context, live []cluster.Member) {
	runs, err := a.store.Runs(ctx, store.RunFilter{Status: store.StatusRunning, Limit: 1000})
	if err != nil {
		return
	}
	for _, r := range runs {
		// A live agent that started after the run did not run it either.
		if m, ok := findMember(live, r.Agent); ok && m.StartedAt.Before(r.StartedAt) {
			continue
		}
		if time.Since(r.StartedAt) < time.Minute {
			continue
		}
		a.closeOrphan(ctx, r)
	}
}

// closeOrphan records r as failed because its agent stopped.
func (a *Agent) closeOrphan(ctx context.Context, r store.Run) {
	end := time.Now().UTC()
	r.Status, r.FinishedAt = store.StatusFailed, &end
	r.DurationMs = store.Millis(end.Sub(r.StartedAt))
	r.Error = "agent " + r.Agent + " stopped while running it"
	if r.Trigger == "listener" {
		r.Outcome = store.OutcomeRolledBack // the broker gave the message back
	}
	a.putRun(ctx, r)
}

func findMember(ms []cluster.Member, id string) (cluster.Member, bool) {
	for _, m := range ms {
		if m.ID == id {
			return m, true
		}
	}
	return cluster.Member{}, false
}

func pauseReason(err error, q api.Quorum) string {
	if err != nil {
		return "coordinator unreachable: " + err.Error()
	}
	return fmt.Sprintf("no quorum: %d of %d agents live, %d required", q.Live, q.Size, q.Required)
}

func sameIDs(a, b []cluster.Member) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ID != b[i].ID {
			return false
		}
	}
	return true
}

// placed reports whether this agent should consume for spec (CloverDX node
// IDs): any → yes; pinned → only the named agent; reservation → the first
// listed agent that is live.
func (a *Agent) placed(l *scripts.Listener) bool {
	switch l.Placement.Mode {
	case "", scripts.PlaceAny:
		return true
	case scripts.PlacePinned:
		return len(l.Placement.Agents) > 0 && l.Placement.Agents[0] == a.cfg.AgentID
	case scripts.PlaceReservation:
		members, _, err := a.view.get()
		if err != nil {
			return false
		}
		live := make(map[string]bool, len(members))
		for _, m := range members {
			live[m.ID] = true
		}
		live[a.cfg.AgentID] = true // this agent is live by definition
		for _, id := range l.Placement.Agents {
			if live[id] {
				return id == a.cfg.AgentID
			}
		}
		return false
	}
	return false
}

// watch reloads projects and states changed by any agent of the cluster, and
// everything every reloadEvery as a safety net for missed notifications.
func (a *Agent) watch(ctx context.Context, changes <-chan store.Change) {
	w, ok := a.store.(store.Watcher)
	const reloadEvery = 30 * time.Second
	full := time.NewTicker(reloadEvery)
	defer full.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case c, open := <-changes:
			if !open {
				changes = nil
				if ok && ctx.Err() == nil {
					// The store's subscription ended (e.g. Redis went away):
					// subscribe again after a pause, then reload everything.
					time.Sleep(time.Second)
					changes = w.Watch(ctx)
					a.reloadAll(ctx)
				}
				continue
			}
			switch c.Kind {
			case store.ChangeProject:
				a.reloadProject(ctx, c.Key)
			case store.ChangeState:
				a.states.reset()
				a.applyListeners()
			}
		case <-full.C:
			a.reloadAll(ctx)
		}
	}
}

// reloadProject installs project's active version if it is not the live
// one, and takes the project off this agent when the store has it no more.
func (a *Agent) reloadProject(ctx context.Context, name string) {
	infos, err := a.store.Projects(ctx)
	if err != nil {
		a.log.Warn("reload project", "project", name, "error", err)
		return
	}
	for _, info := range infos {
		if info.Name == name {
			a.ensureVersion(ctx, info)
			return
		}
	}
	a.uninstall(ctx, name) // deleted
}

func (a *Agent) reloadAll(ctx context.Context) {
	a.states.reset()
	infos, err := a.store.Projects(ctx)
	if err != nil {
		return
	}
	for _, info := range infos {
		a.ensureVersion(ctx, info)
	}
	a.uninstallMissing(ctx, infos)
	a.applyListeners()
}

func (a *Agent) ensureVersion(ctx context.Context, info store.ProjectInfo) {
	if cur, ok := a.Project(info.Name); ok && cur.Version == info.ActiveVersion {
		return
	}
	a.deployMu.Lock()
	defer a.deployMu.Unlock()
	if cur, ok := a.Project(info.Name); ok && cur.Version == info.ActiveVersion {
		return
	}
	p, err := a.loadVersion(ctx, info.Name, info.ActiveVersion)
	if err != nil {
		a.log.Error("load project version", "project", info.Name, "version", info.ActiveVersion, "error", err)
		return
	}
	a.install(p)
	a.applyListeners()
	a.log.Info("reloaded", "project", info.Name, "version", info.ActiveVersion)
}

// advertiseAddr is where other agents reach this agent's HTTP server.
func (a *Agent) advertiseAddr() string {
	if a.cfg.AdvertiseAddr != "" {
		return a.cfg.AdvertiseAddr
	}
	addr := a.httpLn.Addr().(*net.TCPAddr)
	if addr.IP.IsUnspecified() {
		if host, err := os.Hostname(); err == nil && host != "" {
			return net.JoinHostPort(host, strconv.Itoa(addr.Port))
		}
	}
	return addr.String()
}

// proxyTarget picks a markedly less loaded live agent to serve a webhook
// this agent has no free worker, or no room for another run in progress,
// for; "" means serve locally.
func (a *Agent) proxyTarget() string {
	if a.workers.Free() > 0 && a.slots.Free() > 0 {
		return ""
	}
	members, _, err := a.view.get()
	if err != nil {
		return ""
	}
	self := a.ownLoad()
	best, bestLoad := "", self-0.25 // markedly: at least a quarter of capacity freer
	for _, m := range members {
		if m.ID == a.cfg.AgentID || time.Since(m.LastSeen) > 3*time.Second {
			continue
		}
		if l := memberLoad(m); l < bestLoad && m.InFlight < m.Capacity {
			best, bestLoad = m.Address, l
		}
	}
	return best
}

// ownLoad is this agent's load as its heartbeat shows it (memberLoad).
func (a *Agent) ownLoad() float64 {
	return triggers.Load(a.workers.InFlight(), a.workers.Capacity(), a.slots.InFlight(), a.slots.Capacity())
}

// memberLoad is how busy an agent is, from 0 to 1: the larger of its busy
// workers' share and its runs in progress' share of max_inflight (a
// member that reports no max_inflight counts by its workers).
func memberLoad(m cluster.Member) float64 {
	return triggers.Load(m.InFlight, m.Capacity, m.Running, m.MaxInflight)
}
