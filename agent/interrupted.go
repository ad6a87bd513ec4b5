package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/opsrunner/opsrunner/store"
)

// maxInterruptedRuns bounds the runs endInterruptedRuns ends at one start.
const maxInterruptedRuns = 10_000

// endInterruptedRuns records as failed the runs this agent's id left
// running: its process stopped (killed, crashed, or past the shutdown
// timeout) while they ran, so nothing will finish them, and the history
// would show them running for ever. A listener's message was given back by
// the broker and ran again under a run of its own. Agent ids are unique in
// a cluster, so no other agent's runs are touched.
func (a *Agent) endInterruptedRuns(ctx context.Context) {
	now := time.Now().UTC()
	ended := 0
	f := store.RunFilter{Status: store.StatusRunning, Limit: 1000}
	for ended < maxInterruptedRuns {
		runs, err := a.store.Runs(ctx, f)
		if err != nil {
			a.log.Warn("find runs left running", "error", err)
			return
		}
		for _, r := range runs {
			if r.Agent != a.cfg.AgentID || r.Status != store.StatusRunning {
				continue
			}
			r.Status = store.StatusFailed
			r.Error = fmt.Sprintf("interrupted: agent %s stopped while the run was in progress", r.Agent)
			r.FinishedAt = &now
			a.putRun(ctx, r)
			ended++
		}
		if len(runs) < f.Limit {
			break
		}
		f.Before = runs[len(runs)-1].ID
	}
	if ended > 0 {
		a.log.Warn("runs left running by this agent's previous process recorded as failed", "runs", ended)
	}
}
