package abuse

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/internal/testenv"
)

// fixture keeps one agent (with the canary deployed) for a sequence of
// cases, and replaces it after a case that failed, so that each case is
// judged on an agent no earlier case broke. It is used by one test
// goroutine at a time.
type fixture struct {
	parent *testing.T // owns the agents: its cleanup stops the last one
	dir    string
	cur    *agent
	n      int
}

// newFixture returns a fixture whose agent is stopped when t ends.
func newFixture(t *testing.T) *fixture {
	f := &fixture{parent: t, dir: t.TempDir()}
	t.Cleanup(func() { f.retire(t) })
	return f
}

// agent returns the current agent, starting one if there is none. A
// missing address-space limiter skips t (fails it under CI=true).
func (f *fixture) agent(t *testing.T) *agent {
	t.Helper()
	if limiterErr != nil {
		testenv.Unavailable(t, "an address-space limit (prlimit or sh's ulimit -v)", limiterErr)
	}
	if f.cur != nil {
		return f.cur
	}
	f.n++
	dir := filepath.Join(f.dir, "agent"+strconv.Itoa(f.n))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	a, err := startAgent(dir)
	if err != nil {
		t.Fatal(err)
	}
	f.cur = a
	t.Logf("agent %d: %s, address space limited by %s", f.n, a.url, limiter[0])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.deployCanary(ctx); err != nil {
		t.Fatal(err)
	}
	return a
}

// done ends a case: when t failed, the agent is stopped, so that the next
// case starts a fresh one.
func (f *fixture) done(t *testing.T) {
	if t.Failed() {
		f.retire(t)
	}
}

// retire stops the current agent, if any. An agent that has exited on its
// own fails t, unless t already failed (the case that saw it die said so).
func (f *fixture) retire(t *testing.T) {
	a := f.cur
	if a == nil {
		return
	}
	f.cur = nil
	if dead, how := a.exited(); dead {
		if !t.Failed() {
			t.Errorf("the agent %s unexpectedly; its output:\n%s", how, a.out.crash())
		}
		return
	}
	if a.stop() {
		t.Logf("the agent ignored SIGTERM for 10s and was killed; its output ends:\n%s", a.out.last(20))
	}
}
