package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/store"
)

// queryRuns is a history where every filter field takes a few values that
// overlap in many ways, some runs changed status after they were first put
// (stored, then replaced).
func queryRuns() []store.Run {
	projects := []string{"orders", "billing"}
	operations := []string{"A", "B", "C"}
	statuses := []string{store.StatusSucceeded, store.StatusFailed, store.StatusSucceeded, store.StatusTimedOut}
	triggers := []string{"webhook", "listener", "schedule", "operation", "listener"}
	var runs []store.Run
	for i := range 240 {
		r := store.Run{ID: id(1000 + i), Project: projects[i%2], Operation: operations[i%3], Status: statuses[i%4],
			Trigger: triggers[i%5], StartedAt: base.Add(time.Duration(i) * time.Second)}
		switch r.Trigger {
		case "listener":
			r.MessageID = fmt.Sprintf("m%d", i%7)
			r.Outcome = store.Outcomes()[i%len(store.Outcomes())]
		case "schedule":
			r.Schedule = []string{"nightly", "hourly"}[i%2]
		}
		runs = append(runs, r)
	}
	return runs
}

// queryFilters is every filter field alone, with a value some runs have
// and one none has, and combinations of two and three fields.
func queryFilters() []store.RunFilter {
	fs := []store.RunFilter{
		{}, {Project: "orders"}, {Project: "nosuch"}, {Operation: "B"}, {Operation: "nosuch"},
		{Status: store.StatusFailed}, {Status: store.StatusRunning}, {Outcome: store.OutcomeDeadLettered},
		{Outcome: store.OutcomeRefused}, {Trigger: "schedule"}, {Trigger: "nosuch"}, {Schedule: "nightly"},
		{Schedule: "nosuch"}, {MessageID: "m3"}, {MessageID: "nosuch"}, {Since: base.Add(200 * time.Second)},
		{Since: base.Add(time.Hour)},
		{Project: "orders", Operation: "A"}, {Project: "billing", Status: store.StatusTimedOut},
		{Status: store.StatusFailed, Operation: "nosuch"}, {Status: store.StatusFailed, Trigger: "listener"},
		{Trigger: "listener", Outcome: store.OutcomeCommitted, Project: "orders"},
		{Schedule: "hourly", Status: store.StatusSucceeded}, {MessageID: "m2", Operation: "C"},
		{Project: "orders", Operation: "B", Status: store.StatusSucceeded, Since: base.Add(100 * time.Second)},
		{Project: "billing", Operation: "A", Trigger: "webhook"}, // no run has all three
	}
	return fs
}

// want is what a query with f answers from runs (newest first, paged).
func want(runs []store.Run, f store.RunFilter) []string {
	out := []string{}
	for i := len(runs) - 1; i >= 0 && len(out) < f.PageSize(); i-- {
		if f.Matches(runs[i]) {
			out = append(out, runs[i].ID)
		}
	}
	return out
}

// Every filter field, alone and combined, selects exactly the runs whose
// latest version matches, stored or buffered; paging by cursor through a
// filtered query yields each once, newest first.
func testRunQueries(t *testing.T, s store.Store) {
	c := ctx(t)
	runs := queryRuns()
	for i, r := range runs {
		if i%3 == 0 { // first put as running, replaced below
			first := r
			first.Status, first.Outcome = store.StatusRunning, ""
			mustPut(t, s, first)
		}
		if i == len(runs)/3 {
			if err := s.Flush(c); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Flush(c); err != nil {
		t.Fatal(err)
	}
	for i, r := range runs {
		if i%3 == 0 || i >= len(runs)-40 { // a replacement or new; the newest 40 stay buffered
			mustPut(t, s, r)
		}
		if i == len(runs)-41 {
			if err := s.Flush(c); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Runs i%3 != 0 below the newest 40 were never put: drop them from the model.
	var model []store.Run
	for i, r := range runs {
		if i%3 == 0 || i >= len(runs)-40 {
			model = append(model, r)
		}
	}
	for _, f := range queryFilters() {
		f.Limit = 1000
		if got, w := ids(t, s, f), want(model, f); !slices.Equal(got, w) {
			t.Errorf("%+v: got %d runs %v, want %d %v", f, len(got), got, len(w), w)
		}
		// The same through pages of 7 behind the cursor.
		var paged []string
		f.Limit = 7
		for {
			page := ids(t, s, f)
			paged = append(paged, page...)
			if len(page) < f.Limit {
				break
			}
			f.Before = page[len(page)-1]
		}
		f.Before, f.Limit = "", 1000
		if w := want(model, f); !slices.Equal(paged, w) {
			t.Errorf("%+v paged by 7: got %d runs, want %d", f, len(paged), len(w))
		}
	}
}
