package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opsrunner/opsrunner/runtime"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
	"github.com/redis/go-redis/v9"
)

// job is an async run (Prefer: respond-async, RunOperation(ref, false))
// queued for whichever agent has a free worker first. Vars are the chain
// variables the run starts with (RunOperation's caller's, as plain JSON
// data: see runtime.Invocation.Vars); a job queued before they were carried
// has none, and runs without them.
type job struct {
	RunID     string         `json:"runId"`
	Project   string         `json:"project"`
	Operation string         `json:"operation"`
	Trigger   string         `json:"trigger"`
	Event     any            `json:"event"`
	Vars      map[string]any `json:"vars,omitempty"`
}

// jobOf is the queued form of an async run: what runtime.Invocation holds
// but the project (named, each agent has its own copy) and the delivery
// (a queued run has none).
func jobOf(runID string, inv runtime.Invocation) job {
	return job{RunID: runID, Project: inv.Project.Name, Operation: inv.Operation, Trigger: inv.Trigger, Event: inv.Event, Vars: inv.Vars}
}

// invocation is the run j asks for, of project p.
func (j job) invocation(p *scripts.Project) runtime.Invocation {
	return runtime.Invocation{Project: p, Operation: j.Operation, Trigger: j.Trigger, Event: j.Event, Vars: j.Vars}
}

// jobs is the cluster's async queue in Redis: a list agents pull from by
// free capacity, with a per-agent processing list so that an agent that
// dies mid-run gets its jobs back when it restarts with the same id.
type jobs struct {
	c          *redis.Client
	queue      string
	processing string
}

func newJobs(c *redis.Client, agentID string) *jobs {
	return &jobs{c: c, queue: redisPrefix + "jobs", processing: redisPrefix + "jobs:processing:" + agentID}
}

func (q *jobs) push(ctx context.Context, j job) error {
	b, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("queue run %s: %w", j.RunID, err)
	}
	if err := q.c.LPush(ctx, q.queue, b).Err(); err != nil {
		return fmt.Errorf("queue run %s: %w", j.RunID, err)
	}
	return nil
}

// recover moves jobs a previous life of this agent had taken back to the queue.
func (q *jobs) recover(ctx context.Context) error {
	for {
		err := q.c.LMove(ctx, q.processing, q.queue, "RIGHT", "LEFT").Err()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("recover queued runs: %w", err)
		}
	}
}

// pull waits up to wait for a job; ok is false when none came.
func (q *jobs) pull(ctx context.Context, wait time.Duration) (j job, raw string, ok bool, err error) {
	raw, err = q.c.BLMove(ctx, q.queue, q.processing, "RIGHT", "LEFT", wait).Result()
	if errors.Is(err, redis.Nil) {
		return job{}, "", false, nil
	}
	if err != nil {
		return job{}, "", false, err
	}
	if err := json.Unmarshal([]byte(raw), &j); err != nil {
		q.done(ctx, raw)
		return job{}, "", false, fmt.Errorf("bad queued run %q: %w", raw, err)
	}
	return j, raw, true, nil
}

func (q *jobs) done(ctx context.Context, raw string) {
	_ = q.c.LRem(context.WithoutCancel(ctx), q.processing, 1, raw).Err()
}

// enqueue starts an async run: through the cluster queue when there is one,
// else on this agent.
func (a *Agent) enqueue(ctx context.Context, run store.Run, inv runtime.Invocation) error {
	if a.jobs == nil {
		a.background(func(ctx context.Context) { a.execute(ctx, run, inv, keepBoundedResult) })
		return nil
	}
	return a.jobs.push(ctx, jobOf(run.ID, inv))
}

// pullJobs runs queued jobs while this agent has a free worker and room
// for another run in progress, until ctx ends.
func (a *Agent) pullJobs(ctx context.Context) {
	if err := a.jobs.recover(ctx); err != nil {
		a.log.Warn("recover queued runs", "error", err)
	}
	for ctx.Err() == nil {
		if a.slots.Free() == 0 || a.workers.Free() == 0 || a.view.isPaused() {
			sleep(ctx, 20*time.Millisecond)
			continue
		}
		j, raw, ok, err := a.jobs.pull(ctx, time.Second)
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("pull queued run", "error", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		if !ok {
			continue
		}
		p, found := a.Project(j.Project)
		if !found {
			a.log.Error("queued run for a project not deployed here", "run", j.RunID, "project", j.Project)
			a.jobs.done(ctx, raw)
			continue
		}
		run := a.newRun(j.RunID, p, j.Operation, j.Trigger)
		a.background(func(ctx context.Context) {
			defer a.jobs.done(ctx, raw)
			a.execute(ctx, run, j.invocation(p), keepBoundedResult)
		})
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
