// Package schedules computes when schedules fire: it parses a schedule's
// clock (a cron expression in a time zone, or a fixed interval) and gives
// the next tick after a time. It knows nothing of projects, agents or runs;
// the cron syntax is github.com/robfig/cron/v3's.
//
// Ticks are deterministic: every agent of a cluster computes the same tick
// times from the same spec, so a tick's time can name it cluster-wide.
package schedules

import (
	"errors"
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // zones load on machines without a zone database

	"github.com/robfig/cron/v3"
)

// MinEvery is the shortest interval an every-schedule may have.
const MinEvery = time.Second

// Clock gives a schedule's tick times. Implementations are immutable and
// safe for concurrent use.
type Clock interface {
	// Next returns the first tick strictly after t, in t's location; the
	// zero time when the schedule never fires again.
	Next(t time.Time) time.Time
}

// parser reads five fields (minute hour dom month dow), an optional
// leading seconds field, and descriptors (@hourly, @daily, ...).
var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCron parses a cron expression evaluated in loc (nil means UTC). It
// refuses "@every" (use an every-schedule: its ticks are aligned, @every's
// depend on when it was parsed) and a CRON_TZ=/TZ= prefix (the zone is the
// schedule's timezone key), and an expression that never fires (such as
// February 30th).
func ParseCron(expr string, loc *time.Location) (Clock, error) {
	e := strings.TrimSpace(expr)
	switch {
	case e == "":
		return nil, errors.New("cron expression is empty")
	case strings.HasPrefix(e, "@every"):
		return nil, fmt.Errorf("cron %q: @every is not supported; use the every key instead", expr)
	case strings.HasPrefix(e, "CRON_TZ=") || strings.HasPrefix(e, "TZ="):
		return nil, fmt.Errorf("cron %q: give the zone in the timezone key, not in the expression", expr)
	}
	s, err := parser.Parse(e)
	if err != nil {
		return nil, fmt.Errorf("cron %q: %w", expr, err)
	}
	spec, ok := s.(*cron.SpecSchedule)
	if !ok {
		return nil, fmt.Errorf("cron %q: unsupported expression", expr)
	}
	if loc == nil {
		loc = time.UTC
	}
	spec.Location = loc
	if spec.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return nil, fmt.Errorf("cron %q never fires", expr)
	}
	return cronClock{spec}, nil
}

type cronClock struct{ spec *cron.SpecSchedule }

func (c cronClock) Next(t time.Time) time.Time { return c.spec.Next(t) }

// Every returns a clock that ticks every d, aligned to the Unix epoch
// (00:00:00 UTC, 1 January 1970): every 30s ticks at :00 and :30 of each
// minute, every 1h at each whole hour UTC. It refuses d below MinEvery.
func Every(d time.Duration) (Clock, error) {
	if d < MinEvery {
		return nil, fmt.Errorf("every must be at least %s, got %s", MinEvery, d)
	}
	return everyClock(d), nil
}

type everyClock time.Duration

func (e everyClock) Next(t time.Time) time.Time {
	d, ns := int64(e), t.UnixNano()
	floor := ns - ((ns%d)+d)%d // the tick at or before t
	return time.Unix(0, floor+d).In(t.Location())
}

// LoadZone loads a time zone by IANA name ("Europe/Berlin"); "" is UTC.
// The zone database is built into the binary.
func LoadZone(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	if strings.EqualFold(name, "local") {
		return nil, errors.New(`timezone "Local" depends on the agent's machine; name a zone such as "Europe/Berlin" or "UTC"`)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown timezone %q (use an IANA name such as \"Europe/Berlin\")", name)
	}
	return loc, nil
}

// Prev returns the last tick at or before t, looking back at most a year;
// the zero time when there is none. It walks forward from growing windows
// before t, so a frequent cron costs a few dozen Next calls.
func Prev(c Clock, t time.Time) time.Time {
	for _, back := range []time.Duration{time.Minute, time.Hour, 24 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour} {
		var last time.Time
		for n := c.Next(t.Add(-back)); !n.IsZero() && !n.After(t); n = c.Next(n) {
			last = n
		}
		if !last.IsZero() {
			return last
		}
	}
	return time.Time{}
}
