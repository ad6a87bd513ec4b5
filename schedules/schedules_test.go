package schedules_test

import (
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/schedules"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// ticks returns the n ticks of c after from, in UTC RFC 3339.
func ticks(c schedules.Clock, from time.Time, n int) []string {
	var out []string
	for t := from; len(out) < n; {
		t = c.Next(t)
		out = append(out, t.UTC().Format(time.RFC3339))
	}
	return out
}

// TestDaylightSaving specifies what a cron schedule in a zone with daylight
// saving time does across the transitions (robfig/cron's behaviour, which
// docs/schedules.md documents): a local time in the hour skipped in spring
// does not fire that day; a local time in the hour repeated in autumn fires
// twice, once in each offset.
func TestDaylightSaving(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, zone, cron, from string
		want                   []string
	}{
		{"Berlin spring: 02:30 does not exist on 29 March, no run that day", "Europe/Berlin", "30 2 * * *", "2026-03-28T12:00:00Z",
			[]string{"2026-03-30T00:30:00Z", "2026-03-31T00:30:00Z"}},
		{"Berlin spring: hourly goes 01:00 CET → 03:00 CEST", "Europe/Berlin", "0 * * * *", "2026-03-28T23:30:00Z",
			[]string{"2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"}},
		{"Berlin autumn: 02:30 happens twice on 25 October, runs twice", "Europe/Berlin", "30 2 * * *", "2026-10-24T12:00:00Z",
			[]string{"2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z", "2026-10-26T01:30:00Z"}},
		{"Berlin autumn: hourly fires at 02:00 CEST and 02:00 CET", "Europe/Berlin", "0 * * * *", "2026-10-24T23:30:00Z",
			[]string{"2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z"}},
		{"Berlin daily at midnight keeps local midnight", "Europe/Berlin", "@daily", "2026-03-28T12:00:00Z",
			[]string{"2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z"}},
		{"New York spring: 02:30 does not exist on 8 March, no run that day", "America/New_York", "30 2 * * *", "2026-03-07T12:00:00Z",
			[]string{"2026-03-09T06:30:00Z", "2026-03-10T06:30:00Z"}},
		{"New York autumn: 01:30 happens twice on 1 November, runs twice", "America/New_York", "30 1 * * *", "2026-10-31T12:00:00Z",
			[]string{"2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z", "2026-11-02T06:30:00Z"}},
		{"New York autumn: every 30 minutes through the repeated hour", "America/New_York", "*/30 * * * *", "2026-11-01T05:10:00Z",
			[]string{"2026-11-01T05:30:00Z", "2026-11-01T06:00:00Z", "2026-11-01T06:30:00Z", "2026-11-01T07:00:00Z"}},
		{"New York midnight moves from EST to EDT", "America/New_York", "0 0 * * *", "2026-03-07T12:00:00Z",
			[]string{"2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z"}},
		{"seconds field, UTC", "", "*/20 * * * * *", "2026-01-01T00:00:05Z",
			[]string{"2026-01-01T00:00:20Z", "2026-01-01T00:00:40Z", "2026-01-01T00:01:00Z"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			loc, err := schedules.LoadZone(c.zone)
			if err != nil {
				t.Fatal(err)
			}
			clock, err := schedules.ParseCron(c.cron, loc)
			if err != nil {
				t.Fatal(err)
			}
			got := ticks(clock, mustTime(t, c.from), len(c.want))
			if strings.Join(got, " ") != strings.Join(c.want, " ") {
				t.Errorf("ticks after %s:\n got %v\nwant %v", c.from, got, c.want)
			}
		})
	}
}

func TestParseCronRefuses(t *testing.T) {
	t.Parallel()
	for _, expr := range []string{"", "* * *", "61 * * * *", "@every 1m", "CRON_TZ=UTC * * * * *", "0 0 30 2 *", "@sometimes"} {
		if _, err := schedules.ParseCron(expr, nil); err == nil {
			t.Errorf("ParseCron(%q) accepted", expr)
		}
	}
	for _, expr := range []string{"*/5 * * * *", "0 */5 * * * *", "@hourly", "@daily", "@weekly", "@monthly", "@yearly", "0 9 * * MON-FRI"} {
		if _, err := schedules.ParseCron(expr, nil); err != nil {
			t.Errorf("ParseCron(%q): %v", expr, err)
		}
	}
}

func TestLoadZone(t *testing.T) {
	t.Parallel()
	if loc, err := schedules.LoadZone(""); err != nil || loc != time.UTC {
		t.Errorf(`LoadZone("") = %v, %v; want UTC`, loc, err)
	}
	for _, bad := range []string{"Mars/Olympus", "Local", "../etc"} {
		if _, err := schedules.LoadZone(bad); err == nil {
			t.Errorf("LoadZone(%q) accepted", bad)
		}
	}
}

// Every-schedules tick at multiples of their interval since the Unix
// epoch, whatever time they are asked from: every agent agrees on them.
func TestEveryIsAligned(t *testing.T) {
	t.Parallel()
	if _, err := schedules.Every(500 * time.Millisecond); err == nil {
		t.Error("Every(500ms) accepted")
	}
	c, err := schedules.Every(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := ticks(c, mustTime(t, "2026-05-01T10:00:29.5Z"), 3)
	want := []string{"2026-05-01T10:00:30Z", "2026-05-01T10:01:00Z", "2026-05-01T10:01:30Z"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got %v, want %v", got, want)
	}
	if n := c.Next(mustTime(t, "2026-05-01T10:00:30Z")); n.Format(time.RFC3339) != "2026-05-01T10:01:00Z" {
		t.Errorf("Next of a tick is the following tick, got %s", n)
	}
}

func TestPrev(t *testing.T) {
	t.Parallel()
	c, _ := schedules.ParseCron("0 3 * * *", nil)
	at := mustTime(t, "2026-05-02T02:00:00Z")
	if p := schedules.Prev(c, at); p.Format(time.RFC3339) != "2026-05-01T03:00:00Z" {
		t.Errorf("Prev = %s", p)
	}
	e, _ := schedules.Every(time.Second)
	if p := schedules.Prev(e, mustTime(t, "2026-05-02T02:00:00.7Z")); p.Format(time.RFC3339Nano) != "2026-05-02T02:00:00Z" {
		t.Errorf("Prev every = %s", p)
	}
}
