package api_test

import (
	"context"

	"github.com/opsrunner/opsrunner/api"
	"github.com/opsrunner/opsrunner/store"
)

// Schedules answers one schedule, beat, per project of the scope tests.
func (b *scopeBackend) Schedules(context.Context, string) ([]api.ScheduleView, error) {
	var out []api.ScheduleView
	for _, p := range scopeProjects {
		out = append(out, api.ScheduleView{ID: p + "/beat", Name: "beat", Project: p, Enabled: true, Operations: []string{"op"}})
	}
	return out, nil
}

func (b *scopeBackend) SetScheduleState(_ context.Context, id string, _ bool) error {
	b.change("schedule state " + id)
	return nil
}

func (b *scopeBackend) RunSchedule(_ context.Context, id string) ([]store.Run, error) {
	b.change("run schedule " + id)
	return []store.Run{{ID: "run-" + id, Status: store.StatusRunning}}, nil
}
