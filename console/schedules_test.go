package console_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// clocksManifest has a schedule every hour (no tick is due during a test
// but at a whole hour) and a weekday cron one in Berlin, each running one
// operation; Idle runs on no clock.
const clocksManifest = `project: clocks
operations:
  - {name: Beat, script: op.js}
  - {name: Report, script: op.js}
  - {name: Idle, script: op.js, webhook: {path: idle}}
schedules:
  - {name: hourly, every: 1h, operations: [Beat], input: {from: console}}
  - {name: weekday, cron: "30 7 * * MON-FRI", timezone: Europe/Berlin, catchUp: one, operations: [Report]}
`

// scheduleState is what GET /api/v1/schedules says of a schedule.
type scheduleState struct {
	ID, Name, Project, Status string
	Enabled                   bool
	Cron, Every, Timezone     string
	NextRunAt                 *time.Time
}

func (ta *testAgent) schedules(t *testing.T) map[string]scheduleState {
	t.Helper()
	var res struct{ Schedules []scheduleState }
	ta.getJSON(t, "/api/v1/schedules", &res)
	out := map[string]scheduleState{}
	for _, s := range res.Schedules {
		out[s.ID] = s
	}
	return out
}

// The Projects page lists a project's schedules with their clock, state
// and next run, as the API gives them; the On/Off switch changes the state
// the API then reports; Run now starts a run that the schedule's runs link
// shows on the Runs page, filtered by trigger and schedule; and each
// operation names the schedules that run it.
func TestSchedulesOnTheProjectsPage(t *testing.T) {
	ta := startAgent(t, nil)
	ta.deploy(t, "clocks", bundle(t, map[string]string{
		"opsrunner.yaml": clocksManifest,
		"op.js":          "function handle(event) { return {schedule: event.schedule}; }\n",
	}))
	b := newBrowser(t)
	card := `article.project[data-project="clocks"]`
	item := func(id string) string { return card + ` li[data-schedule="` + id + `"]` }
	b.do("open Projects", chromedp.Navigate(ta.URL+"/console/projects"),
		chromedp.WaitVisible(chromedp.CSS(item("clocks/hourly"))), chromedp.WaitVisible(chromedp.CSS(item("clocks/weekday"))))

	t.Run("each schedule shows its clock, state and next run", func(t *testing.T) {
		b := b.in(t)
		api := ta.schedules(t)
		for id, clock := range map[string]string{"clocks/hourly": "every 1h", "clocks/weekday": "cron 30 7 * * MON-FRI (Europe/Berlin)"} {
			s := api[id]
			if s.NextRunAt == nil || !s.Enabled {
				t.Fatalf("the API lists %s as %+v, want it on with a next run", id, s)
			}
			if got := b.text(item(id) + " code.clock"); got != clock {
				t.Errorf("%s's clock reads %q, want %q (the API: every %q, cron %q in %s)", id, got, clock, s.Every, s.Cron, s.Timezone)
			}
			if got := b.text(item(id) + " .status"); got != s.Status {
				t.Errorf("%s's state reads %q, the API says %q", id, got, s.Status)
			}
			if got := b.text(item(id) + " button.toggle .state"); got != "On" {
				t.Errorf("%s's switch reads %q, want On", id, got)
			}
			// The page shows the next run in the browser's own format.
			want := eval[string](b, `"next run " + new Date(`+strconv.Quote(s.NextRunAt.Format(time.RFC3339Nano))+`).toLocaleString()`)
			if got := b.text(item(id) + " .next"); got != want {
				t.Errorf("%s's next run reads %q, want %q", id, got, want)
			}
		}
		if got := b.text(card + ` li[data-operation="Report"] .trigger.schedules`); got != "Schedules: weekday (cron 30 7 * * MON-FRI (Europe/Berlin))" {
			t.Errorf("Report's schedules read %q", got)
		}
		if got := b.text(card + ` li[data-operation="Beat"] .trigger.schedules`); got != "Schedules: hourly (every 1h)" {
			t.Errorf("Beat's schedules read %q", got)
		}
		if eval[bool](b, `document.querySelector('`+card+` li[data-operation="Idle"] .trigger.schedules') !== null`) {
			t.Error("Idle, which no schedule runs, lists schedules")
		}
		b.screenshot("console-schedules")
	})

	t.Run("the switch turns a schedule off and on", func(t *testing.T) {
		b := b.in(t)
		sw := item("clocks/weekday") + " button.toggle"
		b.do("turn weekday off", chromedp.Click(chromedp.CSS(sw)))
		b.waitFor("the switch to read Off", `document.querySelector('`+sw+`').getAttribute("aria-checked") === "false"`)
		if s := ta.schedules(t)["clocks/weekday"]; s.Enabled || s.Status != "off" || s.NextRunAt != nil {
			t.Errorf("after the switch turned it off the API says %+v", s)
		}
		if got := b.text(item("clocks/weekday") + " .next"); got != "no next run" {
			t.Errorf("an off schedule's next run reads %q", got)
		}
		if s := ta.schedules(t)["clocks/hourly"]; !s.Enabled {
			t.Error("turning weekday off turned hourly off too")
		}
		b.do("turn weekday on", chromedp.Click(chromedp.CSS(sw)))
		b.waitFor("the switch to read On", `document.querySelector('`+sw+`').getAttribute("aria-checked") === "true"`)
		if s := ta.schedules(t)["clocks/weekday"]; !s.Enabled || s.Status != "on" || s.NextRunAt == nil {
			t.Errorf("after the switch turned it on the API says %+v", s)
		}
	})

	t.Run("run now starts a run that the schedule's runs show", func(t *testing.T) {
		b := b.in(t)
		b.do("run hourly now", chromedp.Click(chromedp.CSS(item("clocks/hourly")+" button.run-now")),
			chromedp.WaitVisible(chromedp.CSS("#projects-status a.started-run")))
		runID := strings.TrimPrefix(b.text("#projects-status a.started-run"), "run ")
		var run struct{ ID, Trigger, Schedule, Status string }
		eventually(t, "the run to succeed", func() bool {
			ta.getJSON(t, "/api/v1/runs/"+url.PathEscape(runID), &run)
			return run.Status == "succeeded"
		})
		if run.Trigger != "schedule" || run.Schedule != "hourly" {
			t.Fatalf("the run started by Run now is %+v, want trigger schedule, schedule hourly", run)
		}

		// A run of another schedule of the project, and a webhook run of
		// it, which the schedule's runs must leave out.
		if status, body := ta.do(t, http.MethodPost, "/api/v1/schedules/clocks%2Fweekday/run", "", nil); status != http.StatusAccepted {
			t.Fatalf("run weekday now: %d %s", status, body)
		}
		if status, body := ta.do(t, http.MethodPost, "/hooks/clocks/idle", "application/json", []byte(`{}`)); status != http.StatusOK {
			t.Fatalf("webhook: %d %s", status, body)
		}

		b.do("follow its runs link", chromedp.Click(chromedp.CSS(item("clocks/hourly")+" a.schedule-runs")),
			chromedp.WaitVisible(chromedp.CSS(`#runs-body tr[data-run="`+runID+`"]`)))
		path := eval[string](b, `location.pathname + location.search`)
		if path != "/console/runs?trigger=schedule&project=clocks&schedule=hourly" {
			t.Errorf("the link opened %s", path)
		}
		for sel, want := range map[string]string{"#f-trigger": "schedule", "#f-schedule": "hourly", "#f-project": "clocks"} {
			if got := eval[string](b, `document.querySelector("`+sel+`").value`); got != want {
				t.Errorf("the Runs page's filter %s is %q, want %q", sel, got, want)
			}
		}
		// Only the runs of that schedule: Beat's (none of weekday's Report,
		// none of the webhook's Idle).
		rows := eval[[]string](b, `[...document.querySelectorAll("#runs-body tr[data-run]")].map((tr) => tr.cells[2].textContent + "|" + tr.cells[3].textContent)`)
		for _, r := range rows {
			if r != "Beat|schedule hourly" {
				t.Errorf("the schedule's runs list a row %q, want Beat|schedule hourly", r)
			}
		}
		b.screenshot("console-schedule-runs")

		b.do("open the run", chromedp.Click(chromedp.CSS(`#runs-body tr[data-run="`+runID+`"] a`)),
			chromedp.WaitVisible(chromedp.CSS("#run-facts")))
		link := `#run-facts a[href="/console/runs?trigger=schedule&project=clocks&schedule=hourly"]`
		if !eval[bool](b, `document.querySelector('`+link+`')?.textContent === "hourly"`) {
			t.Errorf("the run's facts %q do not link to its schedule's runs", b.text("#run-facts"))
		}
	})
}
