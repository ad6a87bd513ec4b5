package chaos

import (
	"slices"
	"testing"
	"time"
)

// t0 is the origin of the made-up histories below.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// at is t0 plus ms milliseconds.
func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// ended is a pointer to at(ms), for finishedAt.
func ended(ms int) *time.Time { t := at(ms); return &t }

// pairRun is a run of operation op of listener chaos/pair for message m.
func pairRun(id, m, op, agent string, start, end int, status, outcome, errText string) runView {
	r := runView{ID: id, Listener: "chaos/pair", MessageID: m, Operation: op, Agent: agent,
		Status: status, Outcome: outcome, Error: errText, StartedAt: at(start), Attempt: 1}
	if end >= 0 {
		r.FinishedAt = ended(end)
	}
	return r
}

func TestRanAfterCommit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		runs []runView
		want int
	}{
		{"each operation once", []runView{
			pairRun("1", "m1", "steady", "a1", 0, 10, "succeeded", "committed", ""),
			pairRun("2", "m1", "flaky", "a1", 11, 20, "succeeded", "committed", ""),
		}, 0},
		{"a failed try, then the commit", []runView{
			pairRun("1", "m1", "flaky", "a1", 0, 10, "failed", "rolled_back", "planned failure"),
			pairRun("2", "m1", "flaky", "a2", 200, 210, "succeeded", "committed", ""),
		}, 0},
		{"a skipped duplicate after the commit did not run", []runView{
			pairRun("1", "m1", "steady", "a1", 0, 10, "succeeded", "committed", ""),
			pairRun("2", "m1", "steady", "a2", 200, 200, "succeeded", "skipped_duplicate", ""),
		}, 0},
		{"a run overlapping the committed one is not after it", []runView{
			pairRun("1", "m1", "steady", "a1", 0, 10, "succeeded", "committed", ""),
			pairRun("2", "m1", "steady", "a2", 5, 30, "failed", "rolled_back", "lease lost"),
		}, 0},
		{"ran again after its commit", []runView{
			pairRun("2", "m1", "steady", "a2", 200, 210, "succeeded", "rolled_back", ""),
			pairRun("1", "m1", "steady", "a1", 0, 10, "succeeded", "committed", ""),
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := ranAfterCommit(runsByKey(tt.runs)); len(got) != tt.want {
				t.Errorf("ranAfterCommit = %q, want %d lines", got, tt.want)
			}
		})
	}
}

func TestReRanAfterSuccess(t *testing.T) {
	t.Parallel()
	const cause = "planned failure"
	tests := []struct {
		name string
		runs []runView
		want int
	}{
		{"the succeeded operation commits, the failed one runs again", []runView{
			pairRun("1", "m1", "steady", "a1", 0, 10, "succeeded", "committed", ""),
			pairRun("2", "m1", "flaky", "a1", 11, 20, "failed", "rolled_back", "planned failure of p-1"),
			pairRun("3", "m1", "flaky", "a2", 200, 210, "succeeded", "committed", ""),
		}, 0},
		{"rolled back with its sibling and run again", []runView{
			pairRun("1", "m1", "steady", "a1", 0, 10, "succeeded", "rolled_back", "flaky: planned failure of p-1"),
			pairRun("2", "m1", "flaky", "a1", 11, 20, "failed", "rolled_back", "planned failure of p-1"),
			pairRun("3", "m1", "steady", "a2", 200, 210, "succeeded", "committed", ""),
			pairRun("4", "m1", "flaky", "a2", 211, 220, "succeeded", "committed", ""),
		}, 1},
		{"rolled back for another cause (a lost commit) may run again", []runView{
			pairRun("1", "m1", "steady", "a1", 0, 10, "succeeded", "rolled_back", "commit: connection closed"),
			pairRun("3", "m1", "steady", "a2", 200, 210, "succeeded", "committed", ""),
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := reRanAfterSuccess(runsByKey(tt.runs), cause); len(got) != tt.want {
				t.Errorf("reRanAfterSuccess = %q, want %d lines", got, tt.want)
			}
		})
	}
}

func TestTakeovers(t *testing.T) {
	t.Parallel()
	kills := []kill{{agent: "a1", at: at(1000)}, {agent: "a3", at: at(2000)}, {agent: "a2", at: at(5000)}}
	runs := []runView{
		// m1: both operations interrupted on a1 (one finished, unsettled;
		// one running); a3 commits them 2 s and 3 s after the kill.
		pairRun("1", "m1", "steady", "a1", 900, 950, "succeeded", "", ""),
		pairRun("2", "m1", "flaky", "a1", 960, 1500, "failed", "", "interrupted: agent a1 stopped"),
		pairRun("3", "m1", "steady", "a3", 2900, 3000, "succeeded", "committed", ""),
		pairRun("4", "m1", "flaky", "a3", 3900, 4000, "succeeded", "committed", ""),
		// m2: interrupted on a1, committed by a2 1 s after the kill.
		pairRun("5", "m2", "steady", "a1", 990, -1, "running", "", ""),
		pairRun("6", "m2", "steady", "a2", 1900, 2000, "succeeded", "committed", ""),
		// m6: interrupted on a2 and recorded so with an outcome, committed
		// by a3 1.5 s after the kill.
		pairRun("10", "m6", "flaky", "a2", 4800, 5100, "failed", "rolled_back", "interrupted: agent a2 stopped"),
		pairRun("11", "m6", "flaky", "a3", 6400, 6500, "succeeded", "committed", ""),
		// m7: interrupted on a1, run again on a3 0.5 s after the kill and
		// interrupted there by the next kill, then committed by a2 0.6 s
		// after that one.
		pairRun("12", "m7", "steady", "a1", 950, -1, "running", "", ""),
		pairRun("13", "m7", "steady", "a3", 1500, 2100, "failed", "", "interrupted: agent a3 stopped"),
		pairRun("14", "m7", "steady", "a2", 2500, 2600, "succeeded", "committed", ""),
		// m8: interrupted on a1; the only commit is by a run started before
		// the kill, beside it: no takeover.
		pairRun("15", "m8", "steady", "a2", 980, 1200, "succeeded", "committed", ""),
		pairRun("16", "m8", "steady", "a1", 990, -1, "running", "", ""),
		// m9: a poison message interrupted on a1, run again by a2 0.4 s after
		// the kill and failing there, as it always does: taken over at 0.4 s.
		pairRun("17", "m9", "steady", "a1", 990, -1, "running", "", ""),
		pairRun("18", "m9", "steady", "a2", 1400, 1450, "failed", "rolled_back", "poison"),
		pairRun("19", "m9", "steady", "a2", 1900, 1950, "failed", "rolled_back", "poison"),
		// m3: interrupted on a2, never committed afterwards in the history.
		pairRun("7", "m3", "steady", "a2", 4990, -1, "running", "", ""),
		// m4: settled normally on a1 before the kill: not held.
		pairRun("8", "m4", "steady", "a1", 800, 900, "succeeded", "committed", ""),
		// m5: unsettled long before a kill of its agent: not held at it.
		pairRun("9", "m5", "steady", "a2", 100, 200, "succeeded", "", ""),
	}
	f := takeovers(runs, kills, time.Second)
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	if want := []time.Duration{ms(400), ms(500), ms(600), ms(1000), ms(1500), ms(3000)}; !slices.Equal(f.times, want) {
		t.Errorf("times = %v, want %v", f.times, want)
	}
	if f.unresolved != 2 {
		t.Errorf("unresolved = %d, want 2 (m3, m8)", f.unresolved)
	}
	if f.max() != ms(3000) || f.median() != ms(1000) {
		t.Errorf("max %s, median %s, want 3s, 1s", f.max(), f.median())
	}
	if len(f.details) != 8 {
		t.Errorf("details = %q, want one line per held message", f.details)
	}
	if (takeoverFigures{}).max() != 0 || (takeoverFigures{}).median() != 0 {
		t.Error("an empty measurement has a non-zero max or median")
	}
}
