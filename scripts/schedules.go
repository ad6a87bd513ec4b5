package scripts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/opsrunner/opsrunner/schedules"
)

// Catch-up policies of a schedule: what happens to ticks missed while no
// agent could run them (all down, no quorum, disabled) or while the
// schedule's previous run was still going.
const (
	// CatchUpSkip runs nothing for missed ticks (the default).
	CatchUpSkip = "skip"
	// CatchUpOne runs one catch-up run for them, as soon as it can.
	CatchUpOne = "one"
)

// Schedule runs operations on a clock: a cron expression in a time zone,
// or a fixed interval. Each tick runs once in the cluster.
type Schedule struct {
	Name string `yaml:"name" json:"name"`
	// Cron is a cron expression: five fields (minute hour day-of-month
	// month day-of-week), an optional leading seconds field, or a
	// descriptor such as @hourly. Exactly one of Cron and Every is set.
	Cron string `yaml:"cron,omitempty" json:"cron,omitempty"`
	// Every ticks at multiples of this interval since the Unix epoch; at
	// least schedules.MinEvery.
	Every Duration `yaml:"every,omitempty" json:"every,omitempty"`
	// Timezone is the IANA zone Cron is read in; empty means UTC. An
	// every-schedule does not depend on it.
	Timezone string `yaml:"timezone,omitempty" json:"timezone,omitempty"`
	// Operations run, in order, on each tick: each one's chain is a run.
	Operations []string `yaml:"operations" json:"operations"`
	// Input is the JSON value scripts get as event.body; empty means null.
	Input Input `yaml:"input,omitempty" json:"input,omitempty"`
	// CatchUp is CatchUpSkip (default, filled in by validation) or CatchUpOne.
	CatchUp string `yaml:"catchUp,omitempty" json:"catchUp,omitempty"`
	// Overlap lets a tick run while the schedule's previous run goes on;
	// false (default) never does.
	Overlap bool `yaml:"overlap,omitempty" json:"overlap,omitempty"`
	// Enabled is the initial state at first deploy; nil means enabled.
	Enabled *bool `yaml:"enabled,omitempty" json:"enabled,omitempty"`
}

// Clock returns the schedule's tick times. A validated schedule always has
// one; the error is for schedules built by hand.
func (s *Schedule) Clock() (schedules.Clock, error) {
	if s.Cron != "" {
		loc, err := schedules.LoadZone(s.Timezone)
		if err != nil {
			return nil, err
		}
		return schedules.ParseCron(s.Cron, loc)
	}
	return schedules.Every(time.Duration(s.Every))
}

// Input is a schedule's input: any YAML value that has a JSON form, kept as
// its JSON encoding. Empty means none (null).
type Input []byte

// UnmarshalYAML keeps the value as JSON; a value with no JSON form (a
// mapping with non-string keys) is an error at its position.
func (in *Input) UnmarshalYAML(n *yaml.Node) error {
	const want = "input must be JSON data (mappings with string keys, lists, strings, numbers, booleans)"
	var v any
	if err := n.Decode(&v); err != nil {
		return posError(n, "%s: %v", want, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	b, err := json.Marshal(v)
	if err != nil {
		return posError(n, "%s: %v", want, err)
	}
	*in = b
	return nil
}

// MarshalJSON writes the input as the JSON value it holds (null when empty).
func (in Input) MarshalJSON() ([]byte, error) {
	if len(in) == 0 {
		return []byte("null"), nil
	}
	return in, nil
}

// UnmarshalJSON keeps a copy of the JSON value.
func (in *Input) UnmarshalJSON(b []byte) error {
	if !json.Valid(b) {
		return fmt.Errorf("input is not valid JSON")
	}
	*in = bytes.Clone(b)
	return nil
}

// Schedule finds a schedule by name. Safe for concurrent use.
func (p *Project) Schedule(name string) (*Schedule, bool) {
	if p.Manifest == nil {
		return nil, false
	}
	for i := range p.Manifest.Schedules {
		if s := &p.Manifest.Schedules[i]; s.Name == name {
			return s, true
		}
	}
	return nil, false
}

// schedules checks every schedule and applies its defaults.
func (v *validator) schedules() {
	seen := map[string]int{}
	for i := range v.m.Schedules {
		s := &v.m.Schedules[i]
		f := fmt.Sprintf("schedules[%d]", i)
		if err := checkName(s.Name); err != nil {
			v.errf(f+".name", "schedule name: %v", err)
		} else if strings.Contains(s.Name, "/") {
			v.errf(f+".name", "schedule name %q must not contain \"/\"", s.Name)
		} else if j, dup := seen[s.Name]; dup {
			v.errf(f+".name", "duplicate schedule name %q (also schedules[%d])", s.Name, j)
		} else {
			seen[s.Name] = i
		}
		v.scheduleClock(f, s)
		v.scheduleOperations(f, s)
		switch s.CatchUp {
		case "":
			s.CatchUp = CatchUpSkip
		case CatchUpSkip, CatchUpOne:
		default:
			v.errf(f+".catchUp", "unknown catchUp %q: use %s or %s", s.CatchUp, CatchUpSkip, CatchUpOne)
		}
	}
}

// scheduleClock checks that exactly one of cron and every is given, and
// that it (with its zone) parses.
func (v *validator) scheduleClock(f string, s *Schedule) {
	hasCron, hasEvery := v.given(f+".cron"), v.given(f+".every")
	switch {
	case hasCron && hasEvery:
		v.errf(f+".every", "schedule %q has both cron and every: give one", s.Name)
		return
	case !hasCron && !hasEvery:
		v.errf(f, "schedule %q needs cron (e.g. \"*/5 * * * *\") or every (e.g. 30s)", s.Name)
		return
	}
	loc, err := schedules.LoadZone(s.Timezone)
	if err != nil {
		v.errf(f+".timezone", "%v", err)
	}
	if hasEvery {
		if _, err := schedules.Every(time.Duration(s.Every)); err != nil {
			v.errf(f+".every", "%v", err)
		}
		return
	}
	if _, err := schedules.ParseCron(s.Cron, loc); err != nil && loc != nil {
		v.errf(f+".cron", "%v", err)
	}
}

// scheduleOperations checks the operations a schedule runs: at least one,
// each known, none twice, and none an acknowledge (a tick has no message).
func (v *validator) scheduleOperations(f string, s *Schedule) {
	if len(s.Operations) == 0 {
		v.errf(f+".operations", "schedule %q needs at least one operation", s.Name)
	}
	named := map[string]bool{}
	for j, n := range s.Operations {
		fj := fmt.Sprintf("%s.operations[%d]", f, j)
		i, ok := v.ops[n]
		switch {
		case !ok:
			v.errf(fj, "schedule %q names unknown operation %q", s.Name, n)
		case named[n]:
			v.errf(fj, "schedule %q names operation %q twice", s.Name, n)
		case v.m.Operations[i].Type == TypeAcknowledge:
			v.errf(fj, "schedule %q names acknowledge operation %q: a tick has no message to acknowledge", s.Name, n)
		}
		named[n] = true
	}
}
