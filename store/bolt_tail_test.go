package store_test

import (
	"path/filepath"
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
	store.CheckFiltersAgainst(t, when, s, model, []store.RunFilter{
		{Status: store.StatusFailed}, {Status: store.StatusSucceeded, Operation: "op2"}, {Operation: "op1"},
		{Project: "p"}, {Trigger: "webhook"}, {Project: "nosuch"}, {Status: store.StatusRunning},
		{Operation: "op0", Before: model[700].ID}, {Operation: "op0", Before: model[300].ID},
	})
}
