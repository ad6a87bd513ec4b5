package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/opsrunner/opsrunner/api"
	"github.com/opsrunner/opsrunner/runtime"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
	"github.com/opsrunner/opsrunner/triggers"
)

// newRunID returns a time-ordered unique run id.
func newRunID() string { return ulid.Make().String() }

// idempotencyTTL is how long a webhook's Idempotency-Key is remembered.
const idempotencyTTL = 24 * time.Hour

// Invoke runs a webhook-triggered chain (see api.Backend).
func (a *Agent) Invoke(ctx context.Context, inv api.Invocation) (store.Run, *triggers.Response, error) {
	runID := newRunID()
	if inv.IdempotencyKey != "" {
		key := "webhook:" + inv.Project.Name + "/" + inv.Operation.Name + ":" + inv.IdempotencyKey
		claim := store.Claim{RunID: runID, BodyDigest: inv.BodyDigest}
		bound, created, err := a.store.ClaimIdempotencyKey(ctx, key, claim, idempotencyTTL)
		if err != nil {
			return store.Run{}, nil, fmt.Errorf("idempotency key: %w", err)
		}
		if !created {
			if bound.Conflicts(claim) {
				return store.Run{}, nil, &api.Error{Status: http.StatusUnprocessableEntity, Code: api.CodeIdempotencyMismatch,
					Message: fmt.Sprintf("Idempotency-Key %q was first used with another request body (run %s); use a new key for a new request", inv.IdempotencyKey, bound.RunID)}
			}
			return a.replayRun(ctx, bound.RunID, inv.Async)
		}
	}
	run := a.newRun(runID, inv.Project, inv.Operation.Name, "webhook")
	if inv.Async {
		a.putRun(ctx, run)
		event := triggers.Resolve(inv.Event) // it outlives the request: build what it defers now
		rinv := runtime.Invocation{Project: inv.Project, Operation: inv.Operation.Name, Trigger: "webhook", Event: event}
		if err := a.enqueue(ctx, run, rinv); err != nil {
			return store.Run{}, nil, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: err.Error()}
		}
		return run, nil, nil
	}
	run, resp, err := a.executeWebhook(ctx, run, inv)
	if err != nil {
		return store.Run{}, nil, err
	}
	// The worker is free while the run is written: the runs that finish
	// meanwhile join the batch (holding it capped the batch at the workers).
	a.awaitRecorded(ctx, run.ID)
	return run, resp, nil
}

// executeWebhook runs a synchronous webhook's chain as one of the runs in
// progress (max_inflight); past that bound it answers 503 at once.
func (a *Agent) executeWebhook(ctx context.Context, run store.Run, inv api.Invocation) (store.Run, *triggers.Response, error) {
	if !a.slots.TryAcquire() {
		return store.Run{}, nil, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, RetryAfter: 1,
			Message: fmt.Sprintf("this agent has %d runs in progress, its max_inflight: retry shortly", a.slots.Capacity())}
	}
	defer a.slots.Release()
	keep := keepNoResult
	if inv.IdempotencyKey != "" {
		keep = keepReplayableResult
	}
	run, resp := a.execute(ctx, run, runtime.Invocation{Project: inv.Project, Operation: inv.Operation.Name, Trigger: "webhook", Event: inv.Event}, keep)
	return run, resp, nil
}

// awaitRecorded blocks until the runs recorded so far, run id's among them,
// are durable (the store's group commit), so that no run is answered and
// then lost in a crash; with run_durability batched it does not wait. When
// the store fails, the run is answered anyway and the failure logged: the
// script has run, and a retry would run it again.
func (a *Agent) awaitRecorded(ctx context.Context, id string) {
	if a.cfg.RunDurability == RunDurabilityBatched {
		return
	}
	if err := a.store.Flush(ctx); err != nil && ctx.Err() == nil { // else the caller has gone
		a.log.Error("record run before answering", "run", id, "error", err)
	}
}

// replayRun answers a repeated Idempotency-Key with the first run's answer,
// waiting for it when it is still running.
func (a *Agent) replayRun(ctx context.Context, id string, async bool) (store.Run, *triggers.Response, error) {
	for {
		run, err := a.store.Run(ctx, id)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return store.Run{}, nil, err
		}
		if err == nil && (async || run.Status != store.StatusRunning) {
			a.awaitRecorded(ctx, id) // the first request may not have answered yet
			return run, responseOf(run), nil
		}
		select {
		case <-ctx.Done():
			return store.Run{}, nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// responseOf rebuilds a finished run's HTTP answer from its kept result;
// nil for failures.
func responseOf(run store.Run) *triggers.Response {
	value := run.Result
	if run.ResultTruncated {
		value = run.FullResult
	}
	if run.Status != store.StatusSucceeded || (run.ResultTruncated && value == nil) {
		return nil
	}
	resp, err := triggers.ShapeResponse(value)
	if err != nil {
		return nil
	}
	return &resp
}

// keepResult says which runs keep their script's return value.
type keepResult int

const (
	// keepNoResult: nobody will ask (a synchronous webhook answered it).
	keepNoResult keepResult = iota
	// keepBoundedResult: the run's `result`, up to store.MaxResultBytes
	// (async webhook and RunOperation runs, read by their callers later).
	keepBoundedResult
	// keepReplayableResult: the `result`, and the whole value when that is
	// cut, so that a repeated Idempotency-Key gets the first answer.
	keepReplayableResult
)

// withResult keeps value, a run's return value as JSON, on run as keep says.
func withResult(run store.Run, value []byte, keep keepResult) store.Run {
	switch {
	case keep == keepNoResult:
	case len(value) <= store.MaxResultBytes:
		run.Result = value
	default:
		run.ResultTruncated = true
		if keep == keepReplayableResult {
			run.FullResult = value
		}
	}
	return run
}

func (a *Agent) newRun(id string, p *scripts.Project, op, trigger string) store.Run {
	return store.Run{
		ID:        id,
		Project:   p.Name,
		Version:   p.Version,
		Operation: op,
		Trigger:   trigger,
		Status:    store.StatusRunning,
		StartedAt: time.Now().UTC(),
		Agent:     a.cfg.AgentID,
		Logs:      []store.LogLine{},
	}
}

// execute runs a chain for run and records it, with its result as keep
// says; it returns the finished run and, for a successful webhook run, its
// HTTP answer.
func (a *Agent) execute(ctx context.Context, run store.Run, inv runtime.Invocation, keep keepResult) (store.Run, *triggers.Response) {
	inv.RunID = run.ID
	run.Agent = a.cfg.AgentID
	run.Input, run.InputTruncated = runInput(inv.Event)
	live := a.startRun(run, inv.Project, inv.Operation)
	res := a.engine.Run(ctx, inv)
	run = finish(run, res)
	run = withResult(run, res.Redact(res.JSON), keep) // what is kept shows no secret
	var resp *triggers.Response
	if run.Status == store.StatusSucceeded && inv.Trigger == "webhook" {
		r, err := triggers.ShapeResponse(res.JSON)
		if err != nil {
			run.Status, run.Error = store.StatusFailed, "return value: "+err.Error()
		} else {
			resp = &r
			run.HTTPStatus = r.Status
		}
	}
	a.metrics.observe(run)
	live.end(func() { a.putRun(context.WithoutCancel(ctx), run) })
	return run, resp
}

// finish copies a runtime result onto a run.
func finish(run store.Run, res runtime.Result) store.Run {
	run.Status = res.Status
	if res.Err != nil {
		run.Error = res.Err.Error()
	}
	if !res.StartedAt.IsZero() {
		run.StartedAt = res.StartedAt.UTC()
	}
	end := res.FinishedAt.UTC()
	if res.FinishedAt.IsZero() {
		end = time.Now().UTC()
	}
	run.FinishedAt = &end
	run.DurationMs = store.Millis(end.Sub(run.StartedAt))
	run.Chain = res.Steps
	if res.Logs != nil {
		run.Logs = res.Logs
	}
	return run
}

func (a *Agent) putRun(ctx context.Context, run store.Run) {
	if err := a.store.PutRun(ctx, run); err != nil {
		a.log.Error("record run", "run", run.ID, "error", err)
	}
}

// background runs fn on a goroutine owned by the agent, with a worker slot;
// shutdown waits for it.
func (a *Agent) background(fn func(ctx context.Context)) {
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		if err := a.slots.Acquire(a.bgCtx); err != nil {
			return
		}
		defer a.slots.Release()
		fn(a.bgCtx)
	}()
}

// ProxyTarget implements api.Backend: a webhook goes to a markedly less
// loaded agent when this one has no free worker (cluster only).
func (a *Agent) ProxyTarget() string {
	if a.cfg.RedisURL == "" {
		return ""
	}
	return a.proxyTarget()
}

// Runs lists recorded runs and this agent's runs in progress.
func (a *Agent) Runs(ctx context.Context, f store.RunFilter) ([]store.Run, error) {
	runs, err := a.store.Runs(ctx, f)
	if err != nil {
		return nil, err
	}
	return a.active.merge(runs, f), nil
}

// Run returns one run, recorded or in progress on this agent.
func (a *Agent) Run(ctx context.Context, id string) (store.Run, error) {
	run, err := a.store.Run(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		if live, ok := a.active.get(id); ok {
			return live, nil
		}
	}
	return run, err
}

// dispatcher queues RunOperation(ref, false) calls as background runs.
type dispatcher struct{ a *Agent }

func (d dispatcher) Dispatch(ctx context.Context, inv runtime.Invocation) (string, error) {
	if inv.Project == nil {
		return "", errors.New("dispatch: no project")
	}
	run := d.a.newRun(newRunID(), inv.Project, inv.Operation, "operation")
	d.a.putRun(ctx, run)
	inv.Message = nil
	if err := d.a.enqueue(ctx, run, inv); err != nil {
		return "", err
	}
	return run.ID, nil
}

// sender sends SendMessage calls made outside a delivery on the default
// connection.
type sender struct{ a *Agent }

func (s sender) Send(ctx context.Context, destination string, body []byte, headers map[string]string) error {
	return s.a.listeners.Send(ctx, "default", destination, body, headers)
}
