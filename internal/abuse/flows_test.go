package abuse

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestIdempotencyKey: a repeated Idempotency-Key with the same body gets
// the first answer again; with another body, a 422 that says so (as the
// IETF idempotency-key draft and Stripe answer), never the first answer.
func TestIdempotencyKey(t *testing.T) {
	f := newFixture(t)
	a := f.agent(t)
	deployOrFatal(t, a, "idempotent", project("idempotent", 2*time.Second,
		`function handle(event) { return {echo: event.body, nonce: Math.random()}; }`))

	steps := []struct {
		name        string
		body        string
		want        want
		sameAsFirst bool // the answer must be byte-equal to the first one
	}{
		{name: "first", body: `{"order": 1}`, want: want{status: 200, message: `"order":1`}},
		{name: "same key, same body", body: `{"order": 1}`, want: want{status: 200}, sameAsFirst: true},
		{name: "same key, other body", body: `{"order": 2}`,
			want: want{status: 422, code: "idempotency_key_mismatch", message: `(?i)idempotency.key`}},
		{name: "same key, first body again", body: `{"order": 1}`, want: want{status: 200}, sameAsFirst: true},
	}
	var first []byte
	for _, s := range steps {
		ctx, cancel := context.WithTimeout(context.Background(), 7*time.Second)
		got, err := a.do(ctx, request{
			path:   "/hooks/idempotent/op",
			header: map[string]string{"Content-Type": "application/json", "Idempotency-Key": "abuse-key-1"},
			body:   s.body,
		})
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		t.Logf("%s: %d %.200s", s.name, got.status, got.body)
		checkAnswer(t, s.want, got)
		if first == nil {
			first = got.body
		}
		if s.sameAsFirst && !bytes.Equal(got.body, first) {
			t.Errorf("%s: answer %s, want the first answer %s", s.name, got.body, first)
		}
	}
	a.checkServing(t)
}

// TestRunsInProgressAreListed: a run that does not end by itself is in
// runs?status=running while it runs, whatever step it is stuck in, and
// when its timeout interrupts it, it answers 504 and leaves a timed_out
// record.
func TestRunsInProgressAreListed(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct{ name, script string }{
		{"listed-handler-loop", `function handle() { while (true) {} }`},
		{"listed-tojson-loop", toJSONLoop},
	} {
		t.Run(c.name, func(t *testing.T) {
			defer f.done(t)
			a := f.agent(t)
			deployOrFatal(t, a, c.name, project(c.name, 3*time.Second, c.script))
			answered := make(chan result, 1)
			go func() { answered <- post(a, "/hooks/"+c.name+"/op", 8*time.Second) }()

			listed := waitListed(a, c.name, 2500*time.Millisecond)
			if listed != nil {
				t.Errorf("while it runs: %v", listed)
			}
			r := <-answered
			if r.err != nil {
				t.Fatalf("no answer: %v", r.err)
			}
			checkAnswer(t, want{status: 504, code: "timeout", message: `operation "op" exceeded its 3s timeout`}, r.answer)
			recorded("timed_out")(t, a, abuseCase{name: c.name}, r.answer)
			a.checkServing(t)
		})
	}
}

// TestMemoryBombSparesOtherProjects: a run that grows without end is
// stopped with a failure that names the memory limit, while a run of
// another project that started before it (the oldest run, so the one an
// agent-wide "interrupt the oldest" policy would pick) succeeds.
func TestMemoryBombSparesOtherProjects(t *testing.T) {
	f := newFixture(t)
	a := f.agent(t)
	deployOrFatal(t, a, "bomb", project("bomb", 10*time.Second,
		`function handle() { let a = []; for (;;) a.push("x".repeat(1e6)); }`))
	deployOrFatal(t, a, "innocent", project("innocent", 15*time.Second,
		`function handle() { const t = Date.now(); while (Date.now() - t < 8000) {} return "innocent"; }`))

	innocent := make(chan result, 1)
	go func() { innocent <- post(a, "/hooks/innocent/op", 20*time.Second) }()
	// An agent that does not list running runs gets a second, well inside
	// the innocent run's eight: the bomb needs seconds to fill the heap.
	if err := waitListed(a, "innocent", time.Second); err != nil {
		t.Logf("the innocent run was not seen running (%v); the bomb goes off anyway", err)
	}
	bomb := post(a, "/hooks/bomb/op", 15*time.Second)
	if bomb.err != nil {
		t.Errorf("bomb: %v", bomb.err)
	} else {
		t.Logf("bomb: after %s: %d %.300s", bomb.took.Round(time.Millisecond), bomb.status, bomb.body)
		checkAnswer(t, overMemoryLimit, bomb.answer)
	}
	r := <-innocent
	if r.err != nil {
		t.Fatalf("innocent: %v", r.err)
	}
	t.Logf("innocent: after %s: %d %.300s", r.took.Round(time.Millisecond), r.status, r.body)
	checkAnswer(t, want{status: 200, message: `^"innocent"$`}, r.answer)
	for _, line := range strings.Split(a.out.last(200), "\n") {
		if strings.Contains(line, "memory limit") {
			t.Logf("agent: %s", line)
		}
	}
	a.checkServing(t)
}

// result is an answer or why there is none.
type result struct {
	answer
	err error
}

// post sends an empty JSON object to path and waits at most within.
func post(a *agent, path string, within time.Duration) result {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	got, err := a.do(ctx, request{path: path, header: map[string]string{"Content-Type": "application/json"}, body: `{}`})
	return result{got, err}
}

// waitListed waits until project has a run listed in runs?status=running.
func waitListed(a *agent, project string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		runs, err := a.runs(ctx, "status=running&project="+project)
		cancel()
		if err == nil && len(runs) > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no run of %s listed in runs?status=running within %s (last error: %v)", project, limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// deployOrFatal deploys files as project name or fails t.
func deployOrFatal(t *testing.T, a *agent, name string, files map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.deploy(ctx, name, files); err != nil {
		t.Fatal(err)
	}
}
