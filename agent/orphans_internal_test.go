package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/cluster"
	"github.com/opsrunner/opsrunner/store"
)

// The leader closes the records of runs whose agent died while running
// them, once they are a minute old: an agent that is no longer a member, or
// a member that restarted since the run started. Runs of live agents, and
// recent ones, are left alone.
func TestLeaderClosesRunsOfAgentsThatDied(t *testing.T) {
	a := serveInternal(t, "leader")
	ctx := context.Background()
	now := time.Now().UTC()
	live := []cluster.Member{
		{ID: "leader", StartedAt: now.Add(-time.Hour)},
		{ID: "steady", StartedAt: now.Add(-time.Hour)},
		{ID: "restarted", StartedAt: now.Add(-10 * time.Second)},
	}
	runs := []struct {
		id, agent string
		age       time.Duration
		closed    bool
	}{
		{"01A-gone", "gone", 2 * time.Minute, true},
		{"01B-gone-recent", "gone", 30 * time.Second, false},
		{"01C-steady", "steady", 2 * time.Minute, false},
		{"01D-restarted", "restarted", 2 * time.Minute, true},
	}
	for _, r := range runs {
		if err := a.store.PutRun(ctx, store.Run{ID: r.id, Project: "p", Operation: "op", Trigger: "listener", Listener: "p/l",
			Status: store.StatusRunning, StartedAt: now.Add(-r.age), Agent: r.agent}); err != nil {
			t.Fatal(err)
		}
	}
	a.reapOrphanRuns(ctx, live)
	for _, want := range runs {
		got, err := a.store.Run(ctx, want.id)
		if err != nil {
			t.Fatal(err)
		}
		if !want.closed {
			if got.Status != store.StatusRunning {
				t.Errorf("%s: %s, want it left running", want.id, got.Status)
			}
			continue
		}
		if got.Status != store.StatusFailed || got.Outcome != store.OutcomeRolledBack || got.FinishedAt == nil ||
			!strings.Contains(got.Error, "agent "+want.agent+" stopped") {
			t.Errorf("%s: status %s, outcome %s, error %q; want failed, rolled back, naming agent %s", want.id, got.Status, got.Outcome, got.Error, want.agent)
		}
	}
}
