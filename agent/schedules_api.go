package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/opsrunner/opsrunner/api"
	"github.com/opsrunner/opsrunner/cluster"
	"github.com/opsrunner/opsrunner/store"
)

// Schedules lists the schedules of the live projects (see api.SchedulesBackend).
func (a *Agent) Schedules(ctx context.Context, q string) ([]api.ScheduleView, error) {
	q = strings.ToLower(strings.TrimSpace(q))
	paused := a.view.isPaused()
	now := time.Now()
	var out []api.ScheduleView
	for _, e := range a.scheduleEntries() {
		v := scheduleView(e)
		v.Enabled = a.scheduleEnabled(ctx, e)
		switch {
		case !v.Enabled:
			v.Status = "off"
		case paused:
			v.Status = "on (paused: no quorum)"
		default:
			v.Status = "on"
		}
		if v.Enabled {
			if next := e.clock.Next(now); !next.IsZero() {
				next = next.UTC()
				v.NextRunAt = &next
			}
		}
		if q == "" || scheduleMatches(v, q) {
			out = append(out, v)
		}
	}
	return out, nil
}

func scheduleView(e scheduleEntry) api.ScheduleView {
	v := api.ScheduleView{
		ID: e.id, Name: e.s.Name, Project: e.project.Name, Cron: e.s.Cron, Timezone: e.s.Timezone,
		Operations: append([]string{}, e.s.Operations...), CatchUp: e.s.CatchUp, Overlap: e.s.Overlap,
	}
	if e.s.Cron == "" {
		v.Every = e.s.Every.String()
	}
	if v.Timezone == "" {
		v.Timezone = "UTC"
	}
	return v
}

func scheduleMatches(v api.ScheduleView, q string) bool {
	fields := append([]string{v.ID, v.Name, v.Project, v.Status}, v.Operations...)
	for _, f := range fields {
		if strings.Contains(strings.ToLower(f), q) {
			return true
		}
	}
	return false
}

// findSchedule finds a schedule of a live project by id (project/name).
func (a *Agent) findSchedule(id string) (scheduleEntry, error) {
	for _, e := range a.scheduleEntries() {
		if e.id == id {
			return e, nil
		}
	}
	return scheduleEntry{}, &api.Error{Status: http.StatusNotFound, Code: api.CodeNotFound,
		Message: fmt.Sprintf("no schedule %q (ids are project/schedule)", id)}
}

// SetScheduleState stores a schedule's state; every agent's scheduler
// picks it up within a reconcile period of the store's change
// notification. A schedule has no per-operation states, so nothing
// cascades: its operations stay callable by webhooks, listeners and
// RunOperation.
func (a *Agent) SetScheduleState(ctx context.Context, id string, enabled bool) error {
	a.deployMu.Lock()
	defer a.deployMu.Unlock()
	if _, err := a.findSchedule(id); err != nil {
		return err
	}
	if err := a.store.SetState(ctx, scheduleKey(id), enabled); err != nil {
		return fmt.Errorf("set schedule state: %w", err)
	}
	a.states.reset()
	return nil
}

// RunSchedule runs a schedule's operations now on this agent, in order, as
// one background run each (see api.SchedulesBackend). Unless the schedule
// allows overlap, it takes the schedule's lease as a tick does: while a
// run of the schedule goes on anywhere in the cluster it is a 409.
func (a *Agent) RunSchedule(ctx context.Context, id string) ([]store.Run, error) {
	e, err := a.findSchedule(id)
	if err != nil {
		return nil, err
	}
	var lease cluster.Lease
	if !e.s.Overlap {
		lease, err = a.coord.Acquire(ctx, e.lockKey(time.Time{}), scheduleLeaseTTL)
		if errors.Is(err, cluster.ErrHeld) {
			return nil, &api.Error{Status: http.StatusConflict, Code: api.CodeConflict,
				Message: fmt.Sprintf("schedule %s has a run in progress and does not allow overlap; try again when it ends", id)}
		}
		if err != nil {
			return nil, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: "claim schedule: " + err.Error()}
		}
	}
	fired := time.Now().UTC()
	runs := make([]store.Run, len(e.s.Operations))
	for i, op := range e.s.Operations {
		runs[i] = a.newRun(newRunID(), e.project, op, triggerSchedule)
		runs[i].Schedule = e.s.Name
		a.putRun(ctx, runs[i])
	}
	a.background(func(ctx context.Context) {
		if lease != nil {
			defer func() { _ = lease.Release(context.Background()) }()
		}
		for _, run := range runs {
			a.execute(ctx, run, scheduleInvocation(e, run.Operation, fired, fired), keepBoundedResult)
		}
	})
	return runs, nil
}

// startSchedules starts the scheduler on a goroutine of wg until ctx ends.
func (a *Agent) startSchedules(ctx context.Context, wg *sync.WaitGroup) {
	s := newScheduler(a, a.schedMetrics)
	wg.Go(func() { s.run(ctx) })
}
