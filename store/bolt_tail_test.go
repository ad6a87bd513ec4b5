package store_test

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/store"
)

// Runs written but not yet on their posting lists (the tail above the
// posted mark) are found by every filter, as are runs whose status changed
// on either side of the mark; after a crash (kill -9: the store closed
// without posting its tail) too, and the next open posts them.
func TestBoltTailIsFoundByFiltersAfterACrash(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "opsrunner.db")
	opts := store.BoltOptions{FlushInterval: time.Hour, MaxBatch: 10_000}
	s, err := store.OpenBolt(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	var model []store.Run
	put := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			model = append(model, historyRun(i, store.StatusSucceeded))
			if err := s.PutRun(t.Context(), model[i]); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	put(0, 600)   // more than the tail holds: posted at this write
	put(600, 900) // the tail
	for _, i := range []int{10, 650} {
		model[i].Status = store.StatusFailed
		if err := s.PutRun(t.Context(), model[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkFilters(t, "open", s, model)
	if err := s.Crash(); err != nil {
		t.Fatal(err)
	}
	if n, err := store.CountPostings(path); err != nil || n != 600*4 {
		t.Fatalf("after the crash: %d postings (%v), want the 600 posted runs' 2,400", n, err)
	}

	if s, err = store.OpenBolt(path, opts); err != nil {
		t.Fatal(err)
	}
	checkFilters(t, "reopened", s, model)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := store.CountPostings(path); err != nil || n != 900*4 {
		t.Errorf("after reopening: %d postings (%v), want 3,600", n, err)
	}
}

// checkFilters compares queries with several filters against model.
func checkFilters(t *testing.T, when string, s store.Store, model []store.Run) {
	t.Helper()
	for _, f := range []store.RunFilter{
		{Status: store.StatusFailed}, {Status: store.StatusSucceeded, Operation: "op2"}, {Operation: "op1"},
		{Project: "p"}, {Trigger: "webhook"}, {Project: "nosuch"}, {Status: store.StatusRunning},
		{Operation: "op0", Before: model[700].ID}, {Operation: "op0", Before: model[300].ID},
	} {
		f.Limit = 1 << 20
		var want []string
		for _, r := range slices.Backward(model) {
			if f.Matches(r) {
				want = append(want, r.ID)
			}
		}
		runs, err := s.Runs(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range runs {
			got = append(got, r.ID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s, %+v: %d runs, want %d", when, f, len(got), len(want))
		}
	}
}
