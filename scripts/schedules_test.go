package scripts

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const scheduleOps = `project: p
operations:
  - name: Tick
    script: operations/a.js
  - name: Ack
    type: acknowledge
    action: JBXCommit
`

func TestScheduleDefaultsAndInput(t *testing.T) {
	t.Parallel()
	p, err := Load("p", 1, project(scheduleOps+`schedules:
  - name: heartbeat
    every: 30s
    operations: [Tick]
    input: {region: eu, sizes: [1, 2], on: true}
  - name: nightly
    cron: "0 2 * * *"
    timezone: Europe/Berlin
    operations: [Tick]
    catchUp: one
    overlap: true
    enabled: false
`), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hb, ok := p.Schedule("heartbeat")
	if !ok {
		t.Fatal("heartbeat not found")
	}
	if hb.CatchUp != CatchUpSkip || hb.Overlap || hb.Enabled != nil || time.Duration(hb.Every) != 30*time.Second {
		t.Errorf("defaults: %+v", hb)
	}
	if got := string(hb.Input); got != `{"on":true,"region":"eu","sizes":[1,2]}` {
		t.Errorf("input = %s", got)
	}
	n, _ := p.Schedule("nightly")
	if n.CatchUp != CatchUpOne || !n.Overlap || n.Enabled == nil || *n.Enabled || len(n.Input) != 0 {
		t.Errorf("nightly: %+v", n)
	}
	c, err := n.Clock()
	if err != nil {
		t.Fatal(err)
	}
	next := c.Next(time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC))
	if want := time.Date(2026, 7, 2, 0, 0, 0, 0, time.UTC); !next.Equal(want) { // 02:00 CEST
		t.Errorf("next = %s, want %s", next, want)
	}
}

// Each problem of a schedule is a deploy error at its opsrunner.yaml
// line:col.
func TestScheduleValidation(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, schedule, want string }{
		{"invalid cron", "  - name: s\n    cron: \"61 * * * *\"\n    operations: [Tick]\n",
			`opsrunner.yaml:10:11: schedules[0].cron: cron "61 * * * *": `},
		{"unknown zone", "  - name: s\n    cron: \"0 * * * *\"\n    timezone: Mars/Olympus\n    operations: [Tick]\n",
			`opsrunner.yaml:11:15: schedules[0].timezone: unknown timezone "Mars/Olympus"`},
		{"both cron and every", "  - name: s\n    cron: \"0 * * * *\"\n    every: 1m\n    operations: [Tick]\n",
			`opsrunner.yaml:11:12: schedules[0].every: schedule "s" has both cron and every`},
		{"neither cron nor every", "  - name: s\n    operations: [Tick]\n",
			`opsrunner.yaml:9:5: schedules[0]: schedule "s" needs cron`},
		{"every below a second", "  - name: s\n    every: 500ms\n    operations: [Tick]\n",
			`opsrunner.yaml:10:12: schedules[0].every: every must be at least 1s`},
		{"unknown operation", "  - name: s\n    every: 1m\n    operations: [Tick, Tock]\n",
			`opsrunner.yaml:11:24: schedules[0].operations[1]: schedule "s" names unknown operation "Tock"`},
		{"acknowledge operation", "  - name: s\n    every: 1m\n    operations: [Ack]\n",
			`schedules[0].operations[0]: schedule "s" names acknowledge operation "Ack"`},
		{"no operations", "  - name: s\n    every: 1m\n",
			`opsrunner.yaml:9:5: schedules[0].operations: schedule "s" needs at least one operation`},
		{"duplicate names", "  - name: s\n    every: 1m\n    operations: [Tick]\n  - name: s\n    every: 2m\n    operations: [Tick]\n",
			`opsrunner.yaml:12:11: schedules[1].name: duplicate schedule name "s" (also schedules[0])`},
		{"unknown catchUp", "  - name: s\n    every: 1m\n    catchUp: all\n    operations: [Tick]\n",
			`opsrunner.yaml:11:14: schedules[0].catchUp: unknown catchUp "all"`},
		{"unknown key", "  - name: s\n    every: 1m\n    operations: [Tick]\n    catchup: one\n",
			`opsrunner.yaml:12:5: schedules[0].catchup: unknown key "catchup" (did you mean "catchUp"?)`},
		{"input with non-string keys", "  - name: s\n    every: 1m\n    operations: [Tick]\n    input: {[1]: x}\n",
			`opsrunner.yaml:12:12: schedules[0].input: input must be JSON data`},
		{"slash in name", "  - name: a/b\n    every: 1m\n    operations: [Tick]\n",
			`schedules[0].name: schedule name "a/b" must not contain "/"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load("p", 1, project(scheduleOps+"schedules:\n"+c.schedule), LoadOptions{})
			if err == nil {
				t.Fatal("deployed")
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("%T: %v", err, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error:\n %v\nwant it to contain\n %s", err, c.want)
			}
		})
	}
}
