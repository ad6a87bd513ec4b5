package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/opsrunner/opsrunner/store"
)

// SchedulesBackend manages schedules: operations run on a clock, once per
// tick in the cluster. Ids are "project/schedule". An unknown id is an
// *Error with status 404.
type SchedulesBackend interface {
	// Schedules lists schedules with their states and next tick; q, when
	// not empty, keeps those whose id, name, project, operation names or
	// status contain it, case-insensitively.
	Schedules(ctx context.Context, q string) ([]ScheduleView, error)
	// SetScheduleState turns a schedule on or off, on every agent, and
	// keeps the state across restarts and deploys.
	SetScheduleState(ctx context.Context, id string, enabled bool) error
	// RunSchedule runs the schedule's operations now, whatever its state
	// and clock, and returns their runs (running) without waiting for them.
	RunSchedule(ctx context.Context, id string) ([]store.Run, error)
}

// ScheduleView is a schedule as the API shows it.
type ScheduleView struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Project  string `json:"project"`
	Enabled  bool   `json:"enabled"`
	Status   string `json:"status"`
	Cron     string `json:"cron,omitempty"`
	Every    string `json:"every,omitempty"`
	Timezone string `json:"timezone"`
	// NextRunAt is the next tick; null while the schedule is off.
	NextRunAt  *time.Time `json:"nextRunAt"`
	Operations []string   `json:"operations"`
	CatchUp    string     `json:"catchUp"`
	Overlap    bool       `json:"overlap"`
}

// scheduleProject is the project of the schedule {id}: what comes before
// its "/".
func scheduleProject(_ *server, c *echo.Context) (string, error) {
	project, _, _ := strings.Cut(param(c, "id"), "/")
	return project, nil
}

func (s *server) schedules(c *echo.Context) error {
	list, err := s.b.Schedules(c.Request().Context(), c.QueryParam("q"))
	if err != nil {
		return err
	}
	list = filterReadable(c, list, func(v ScheduleView) string { return v.Project })
	if list == nil {
		list = []ScheduleView{}
	}
	return c.JSON(http.StatusOK, map[string]any{"schedules": list})
}

// scheduleState serves PUT /api/v1/schedules/{id}/state and answers the
// schedule as it now is.
func (s *server) scheduleState(c *echo.Context) error {
	on, err := s.readState(c)
	if err != nil {
		return err
	}
	id := param(c, "id")
	if err := s.b.SetScheduleState(c.Request().Context(), id, on); err != nil {
		return err
	}
	list, err := s.b.Schedules(c.Request().Context(), "")
	if err != nil {
		return err
	}
	for _, v := range list {
		if v.ID == id {
			return c.JSON(http.StatusOK, v)
		}
	}
	return newError(http.StatusNotFound, CodeNotFound, "no schedule "+id, nil)
}

// runSchedule serves POST /api/v1/schedules/{id}/run: 202 with the run of
// the schedule's first operation in Location, and every run's id.
func (s *server) runSchedule(c *echo.Context) error {
	runs, err := s.b.RunSchedule(c.Request().Context(), param(c, "id"))
	if err != nil {
		return err
	}
	ids := make([]string, len(runs))
	for i, r := range runs {
		ids[i] = r.ID
	}
	loc := "/api/v1/runs/" + ids[0]
	c.Response().Header().Set("Location", loc)
	return c.JSON(http.StatusAccepted, map[string]any{"runId": ids[0], "runs": ids, "status": store.StatusRunning, "location": loc})
}
