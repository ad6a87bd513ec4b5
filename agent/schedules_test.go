package agent_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/store"
)

// scheduleProject is a project whose schedule "beat" runs operation Beat
// (returning its event) on clock, a manifest fragment ("every: 1s").
func scheduleProject(t *testing.T, name, clock string) []byte {
	return bundle(t, map[string]string{
		"opsrunner.yaml": fmt.Sprintf(`project: %s
operations:
  - name: Beat
    script: beat.js
schedules:
  - name: beat
    %s
    operations: [Beat]
    input: {region: eu}
`, name, clock),
		"beat.js": "function handle(event) { log.info('tick ' + event.scheduledAt); return event; }\n",
	})
}

// scheduleRuns lists the runs of schedule name, up to 1000.
func scheduleRuns(t *testing.T, ta *testAgent, name string) []store.Run {
	t.Helper()
	return ta.runs(t, "?trigger=schedule&limit=1000&schedule="+url.QueryEscape(name))
}

// ticksIn counts runs per scheduledAt, failing on a tick run twice, and
// returns how many ticks fall in [from, to).
func ticksIn(t *testing.T, runs []store.Run, from, to time.Time) int {
	t.Helper()
	seen := map[time.Time]string{}
	n := 0
	for _, r := range runs {
		if r.ScheduledAt == nil {
			continue // a run-now
		}
		at := r.ScheduledAt.UTC()
		if other, dup := seen[at]; dup {
			t.Errorf("tick %s ran twice: runs %s (agent %s) and %s", at.Format(time.RFC3339), other, r.Agent, r.ID)
		}
		seen[at] = r.ID + " on " + r.Agent
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

func TestScheduleEverySecondOnOneAgent(t *testing.T) {
	ta := startAgent(t, nil)
	ta.mustDeploy(t, "clock", scheduleProject(t, "clock", "every: 1s"))
	from := time.Now().Truncate(time.Second).Add(2 * time.Second)
	to := from.Add(20 * time.Second)
	time.Sleep(time.Until(to.Add(1500 * time.Millisecond)))
	runs := scheduleRuns(t, ta, "beat")
	n := ticksIn(t, runs, from, to)
	if n < 19 || n > 21 {
		t.Errorf("every: 1s over 20 s ran %d ticks, want 20 ± 1", n)
	}
	lateness(t, "one agent", runs)

	r := runs[0]
	if r.Trigger != "schedule" || r.Schedule != "beat" || r.Project != "clock" || r.Status != store.StatusSucceeded {
		t.Fatalf("run: %+v", r)
	}
	var ev map[string]any
	if err := json.Unmarshal(r.Result, &ev); err != nil {
		t.Fatalf("result %s: %v", r.Result, err)
	}
	if ev["trigger"] != "schedule" || ev["schedule"] != "beat" || ev["scheduledAt"] != r.ScheduledAt.Format(time.RFC3339Nano) {
		t.Errorf("event: %v (scheduledAt of the run %s)", ev, r.ScheduledAt)
	}
	if body, _ := ev["body"].(map[string]any); body["region"] != "eu" {
		t.Errorf("event.body = %v, want the input", ev["body"])
	}
	if fired, err := time.Parse(time.RFC3339Nano, fmt.Sprint(ev["firedAt"])); err != nil || fired.Before(*r.ScheduledAt) {
		t.Errorf("firedAt %v before scheduledAt %s (%v)", ev["firedAt"], r.ScheduledAt, err)
	}
}

// lateness logs the median and p99 of due → start over runs of ticks.
func lateness(t *testing.T, where string, runs []store.Run) {
	var late []time.Duration
	for _, r := range runs {
		if r.ScheduledAt != nil {
			late = append(late, r.StartedAt.Sub(*r.ScheduledAt))
		}
	}
	if len(late) == 0 {
		return
	}
	sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
	p := func(q float64) time.Duration { return late[min(len(late)-1, int(q*float64(len(late))))] }
	t.Logf("lateness (due → start) %s over %d ticks: median %s, p99 %s, max %s", where, len(late),
		p(0.5).Round(10*time.Microsecond), p(0.99).Round(10*time.Microsecond), late[len(late)-1].Round(10*time.Microsecond))
}

type scheduleView struct {
	ID, Name, Project, Status string
	Enabled                   bool
	NextRunAt                 *time.Time
	Operations                []string
}

func (ta *testAgent) schedules(t *testing.T, q string) []scheduleView {
	t.Helper()
	r := ta.do(t, http.MethodGet, "/api/v1/schedules?q="+url.QueryEscape(q), "", nil, nil)
	var out struct{ Schedules []scheduleView }
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &out) != nil {
		t.Fatalf("GET schedules: %d %s", r.Status, r.Body)
	}
	return out.Schedules
}

func (ta *testAgent) setSchedule(t *testing.T, id string, on bool) scheduleView {
	t.Helper()
	r := ta.do(t, http.MethodPut, "/api/v1/schedules/"+url.PathEscape(id)+"/state", "application/json", fmt.Appendf(nil, `{"enabled": %t}`, on), nil)
	var v scheduleView
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &v) != nil {
		t.Fatalf("PUT schedule state: %d %s", r.Status, r.Body)
	}
	return v
}

// A schedule is listed with its next tick, turned off and on (stopping and
// resuming its ticks, and surviving a restart), and run now.
func TestScheduleManagement(t *testing.T) {
	dir := t.TempDir()
	ta := startAgent(t, func(c *agent.Config) { c.DataDir = dir })
	ta.mustDeploy(t, "mgmt", scheduleProject(t, "mgmt", "cron: \"* * * * * *\"\n    timezone: Europe/Berlin"))

	list := ta.schedules(t, "")
	if len(list) != 1 || list[0].ID != "mgmt/beat" || !list[0].Enabled || list[0].NextRunAt == nil || list[0].Status != "on" {
		t.Fatalf("list: %+v", list)
	}
	if until := time.Until(*list[0].NextRunAt); until <= 0 || until > 2*time.Second {
		t.Errorf("nextRunAt %s is not the next second", list[0].NextRunAt)
	}
	for q, want := range map[string]int{"BEAT": 1, "mgmt": 1, "beat op": 0, "on": 1, "nothing": 0} {
		if got := len(ta.schedules(t, q)); got != want {
			t.Errorf("q=%q: %d schedules, want %d", q, got, want)
		}
	}
	waitFor(t, 10*time.Second, func() bool { return len(scheduleRuns(t, ta, "beat")) >= 2 })

	if v := ta.setSchedule(t, "mgmt/beat", false); v.Enabled || v.NextRunAt != nil || v.Status != "off" {
		t.Fatalf("disabled: %+v", v)
	}
	time.Sleep(1500 * time.Millisecond) // a tick in progress ends
	before := len(scheduleRuns(t, ta, "beat"))
	time.Sleep(2500 * time.Millisecond)
	if after := len(scheduleRuns(t, ta, "beat")); after != before {
		t.Fatalf("a disabled schedule ran %d more ticks", after-before)
	}

	// Run now: 202 with the run's location, whatever the state.
	r := ta.do(t, http.MethodPost, "/api/v1/schedules/"+url.PathEscape("mgmt/beat")+"/run", "", nil, nil)
	if r.Status != http.StatusAccepted || !strings.HasPrefix(r.Header.Get("Location"), "/api/v1/runs/") {
		t.Fatalf("run now: %d %v %s", r.Status, r.Header, r.Body)
	}
	loc := r.Header.Get("Location")
	waitFor(t, 10*time.Second, func() bool {
		var run store.Run
		g := ta.do(t, http.MethodGet, loc, "", nil, nil)
		return json.Unmarshal(g.Body, &run) == nil && run.Status == store.StatusSucceeded && run.Trigger == "schedule" && run.Schedule == "beat"
	})
	if r := ta.do(t, http.MethodPost, "/api/v1/schedules/mgmt%2Fnope/run", "", nil, nil); r.Status != http.StatusNotFound || r.errorCode(t) != "not_found" {
		t.Errorf("run now of an unknown schedule: %d %s", r.Status, r.Body)
	}

	// The state survives a restart.
	ta.stop()
	ta = startAgent(t, func(c *agent.Config) { c.DataDir = dir })
	if l := ta.schedules(t, ""); len(l) != 1 || l[0].Enabled {
		t.Fatalf("after restart: %+v", l)
	}
	before = len(scheduleRuns(t, ta, "beat"))
	ta.setSchedule(t, "mgmt/beat", true)
	waitFor(t, 10*time.Second, func() bool { return len(scheduleRuns(t, ta, "beat")) >= before+2 })
}

// Invalid cron expressions and zones are refused at deploy, at their
// opsrunner.yaml line:col.
func TestScheduleDeployErrors(t *testing.T) {
	ta := startAgent(t, nil)
	for clock, want := range map[string]string{
		`cron: "0 25 * * *"`:                           "opsrunner.yaml:7:11",
		"cron: \"0 * * * *\"\n    timezone: Moon/Base": "opsrunner.yaml:8:15",
		"every: 100ms":                                 "opsrunner.yaml:7:12",
	} {
		r := ta.deploy(t, "bad", scheduleProject(t, "bad", clock))
		if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), want) {
			t.Errorf("%s: %d %s, want 400 at %s", clock, r.Status, r.Body, want)
		}
	}
}

// slowSchedule is a project whose schedule "slow" runs an operation that
// busy-waits ms milliseconds, every second, with extra schedule keys.
func slowSchedule(t *testing.T, name string, ms int, extra string) []byte {
	return bundle(t, map[string]string{
		"opsrunner.yaml": fmt.Sprintf(`project: %s
operations:
  - name: Slow
    script: slow.js
schedules:
  - name: slow
    every: 1s
    operations: [Slow]
%s`, name, extra),
		"slow.js": fmt.Sprintf("function handle(event) { var t = Date.now(); while (Date.now() - t < %d) {} }\n", ms),
	})
}

// finished returns the schedule's finished tick runs, oldest first.
func finished(t *testing.T, ta *testAgent, name string) []store.Run {
	var out []store.Run
	for _, r := range scheduleRuns(t, ta, name) {
		if r.FinishedAt != nil && r.ScheduledAt != nil {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StartedAt.Before(out[j].StartedAt) })
	return out
}

// Without overlap a tick never runs while the previous run goes on: with
// catchUp skip the ticks that came due meanwhile are skipped, with catchUp
// one a single catch-up run follows each run.
func TestScheduleNoOverlap(t *testing.T) {
	ta := startAgent(t, nil)
	ta.mustDeploy(t, "skip", slowSchedule(t, "skip", 2500, ""))
	ta.mustDeploy(t, "one", slowSchedule(t, "one", 2500, "    catchUp: one\n"))
	waitFor(t, 30*time.Second, func() bool { return len(finished(t, ta, "slow")) >= 6 })
	for _, project := range []string{"skip", "one"} {
		var runs []store.Run
		for _, r := range finished(t, ta, "slow") {
			if r.Project == project {
				runs = append(runs, r)
			}
		}
		for i := 1; i < len(runs); i++ {
			prev, r := runs[i-1], runs[i]
			if r.StartedAt.Before(*prev.FinishedAt) {
				t.Errorf("%s: tick %s started before the run of tick %s ended", project, r.ScheduledAt, prev.ScheduledAt)
			}
			late := r.StartedAt.Sub(*r.ScheduledAt)
			if project == "skip" && late > time.Second {
				t.Errorf("skip: tick %s ran %s late: it should have been skipped", r.ScheduledAt, late)
			}
			if gap := r.ScheduledAt.Sub(*prev.ScheduledAt); project == "one" && gap > 3*time.Second {
				t.Errorf("one: ticks %s then %s: the catch-up run is not the newest missed tick", prev.ScheduledAt, r.ScheduledAt)
			}
		}
	}
}

// With catchUp one, an agent that starts after missing ticks runs the last
// one missed, once; with skip it runs none. A catch-up run is the one that
// starts at least startGrace after its tick: the agent looks for the tick
// before now-startGrace, and runs regular ticks on time. It may start
// before startAgent returns.
func TestScheduleCatchUpOnStart(t *testing.T) {
	dir := t.TempDir()
	ta := startAgent(t, func(c *agent.Config) { c.DataDir = dir })
	ta.mustDeploy(t, "one", slowSchedule(t, "one", 0, "    catchUp: one\n"))
	ta.mustDeploy(t, "skip", slowSchedule(t, "skip", 0, ""))
	waitFor(t, 10*time.Second, func() bool { return len(finished(t, ta, "slow")) >= 4 })
	ta.stop()
	down := time.Now()
	time.Sleep(3 * time.Second)
	restart := time.Now()
	ta = startAgent(t, func(c *agent.Config) { c.DataDir = dir })
	catchUps := func() map[string][]store.Run {
		late := map[string][]store.Run{}
		for _, r := range finished(t, ta, "slow") {
			if r.StartedAt.After(restart) && r.StartedAt.Sub(*r.ScheduledAt) >= time.Second {
				late[r.Project] = append(late[r.Project], r)
			}
		}
		return late
	}
	waitFor(t, 10*time.Second, func() bool { return len(catchUps()["one"]) > 0 })
	time.Sleep(time.Second)
	late := catchUps()
	if len(late["one"]) != 1 || len(late["skip"]) != 0 {
		t.Fatalf("catch-up runs after the restart: one %d, skip %d; want one 1, skip 0", len(late["one"]), len(late["skip"]))
	}
	if tick := *late["one"][0].ScheduledAt; !tick.After(down) || tick.Before(restart.Add(-2*time.Second)) {
		t.Errorf("catch-up ran tick %s: want the newest tick missed between %s and %s", tick, down, restart)
	}
}

// The heartbeat sample's schedule runs (here, run now): it publishes a
// heartbeat built from its event.
func TestScheduleSampleHeartbeat(t *testing.T) {
	ta := startAgent(t, nil)
	ta.mustDeploy(t, "heartbeat", sampleBundle(t, "heartbeat"))
	r := ta.do(t, http.MethodPost, "/api/v1/schedules/heartbeat%2Fbeat/run", "", nil, nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("run now: %d %s", r.Status, r.Body)
	}
	var run store.Run
	waitFor(t, 10*time.Second, func() bool {
		g := ta.do(t, http.MethodGet, r.Header.Get("Location"), "", nil, nil)
		return json.Unmarshal(g.Body, &run) == nil && run.Status != store.StatusRunning
	})
	if run.Status != store.StatusSucceeded || !strings.Contains(string(run.Result), `"service":"opsrunner"`) {
		t.Fatalf("heartbeat run: %s %s %s", run.Status, run.Error, run.Result)
	}
	if l := ta.schedules(t, "report"); len(l) != 1 || l[0].NextRunAt == nil || l[0].NextRunAt.Weekday() == time.Saturday || l[0].NextRunAt.Weekday() == time.Sunday {
		t.Errorf("weekday-report: %+v", l)
	}
}

// In a cluster, a schedule turned off on one agent stops on every agent,
// and one turned on again runs again; below quorum no tick runs.
func TestScheduleStateAndQuorumInCluster(t *testing.T) {
	rds, b := clusterServices(t)
	a := clusterAgent(t, "sc-a", rds.URL, 2, b)
	a.mustDeploy(t, "cl", scheduleProject(t, "cl", "every: 1s"))
	if l := a.schedules(t, ""); len(l) != 1 || l[0].Status != "on (paused: no quorum)" {
		t.Fatalf("alone of two: %+v", l)
	}
	time.Sleep(2 * time.Second)
	if n := len(scheduleRuns(t, a, "beat")); n != 0 {
		t.Fatalf("below quorum %d ticks ran", n)
	}
	bAgent := clusterAgent(t, "sc-b", rds.URL, 2, b)
	waitFor(t, 20*time.Second, func() bool { return len(scheduleRuns(t, a, "beat")) >= 3 })

	a.setSchedule(t, "cl/beat", false)
	waitFor(t, 10*time.Second, func() bool { l := bAgent.schedules(t, ""); return len(l) == 1 && !l[0].Enabled })
	time.Sleep(1500 * time.Millisecond) // a tick in progress ends
	before := len(scheduleRuns(t, a, "beat"))
	time.Sleep(2500 * time.Millisecond)
	if after := len(scheduleRuns(t, a, "beat")); after != before {
		t.Fatalf("disabled on sc-a, the cluster ran %d more ticks", after-before)
	}
	bAgent.setSchedule(t, "cl/beat", true)
	waitFor(t, 10*time.Second, func() bool { return len(scheduleRuns(t, a, "beat")) >= before+2 })
	ticksIn(t, scheduleRuns(t, a, "beat"), time.Time{}, time.Now()) // no tick twice
}
