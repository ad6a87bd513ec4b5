package store_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/store"
)

func historyRun(i int, status string) store.Run {
	return store.Run{ID: fmt.Sprintf("run-%07d", i), Project: "p", Operation: fmt.Sprintf("op%d", i%3),
		Trigger: "webhook", Status: status, StartedAt: time.Now(), Logs: []store.LogLine{{Message: "a log line"}}}
}

// storedIDs lists every run on disk, newest first (nothing is buffered
// after a flush).
func storedIDs(t *testing.T, s *store.Bolt, f store.RunFilter) []string {
	t.Helper()
	f.Limit = 1 << 20
	runs, err := s.Runs(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = r.ID
	}
	return out
}

// Retention holds at every write, without a sweep: after each flush the
// store keeps the newest runs, at least MaxRuns of them once it has had
// that many, never more than MaxRuns and one generation.
func TestBoltRetentionHoldsAtEveryFlush(t *testing.T) {
	t.Parallel()
	const maxRuns, batch = 100, 30
	s := openBolt(t, store.BoltOptions{Retention: store.Retention{MaxRuns: maxRuns}, FlushInterval: time.Hour})
	for i := range 1000 {
		if err := s.PutRun(t.Context(), historyRun(i, store.StatusSucceeded)); err != nil {
			t.Fatal(err)
		}
		if i%batch != batch-1 {
			continue
		}
		if err := s.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		got := storedIDs(t, s, store.RunFilter{})
		most := maxRuns + store.GenRuns(maxRuns)
		n := len(got)
		if n < min(i+1, maxRuns) || n > most || got[0] != fmt.Sprintf("run-%07d", i) || got[n-1] != fmt.Sprintf("run-%07d", i+1-n) {
			t.Fatalf("after %d runs: stored %d (%s … %s), want the newest %d to %d", i+1, n, got[0], got[n-1], min(i+1, maxRuns), most)
		}
	}
}

// A run put again with another status leaves the old status's list, and a
// run deleted by retention leaves every list: queries by any of its values
// no longer find it, and no posting outlives its run.
func TestBoltIndexFollowsStatusChangeAndDeletion(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "opsrunner.db")
	s, err := store.OpenBolt(path, store.BoltOptions{Retention: store.Retention{MaxRuns: 10}, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	first := historyRun(0, store.StatusRunning)
	put := func(r store.Run) {
		t.Helper()
		if err := s.PutRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	put(first)
	done := first
	done.Status, done.Trigger, done.Outcome = store.StatusFailed, "listener", store.OutcomeDeadLettered
	put(done)
	for _, tc := range []struct {
		f    store.RunFilter
		want int
	}{
		{store.RunFilter{Status: store.StatusRunning}, 0},
		{store.RunFilter{Trigger: "webhook"}, 0},
		{store.RunFilter{Status: store.StatusFailed}, 1},
		{store.RunFilter{Trigger: "listener", Outcome: store.OutcomeDeadLettered}, 1},
	} {
		if got := storedIDs(t, s, tc.f); len(got) != tc.want {
			t.Errorf("after the status change %+v: %v, want %d run", tc.f, got, tc.want)
		}
	}
	for i := 1; i <= 10; i++ { // ten newer runs push the first one out
		put(historyRun(i, store.StatusSucceeded))
	}
	if err := s.Sweep(ctx, time.Now()); err != nil { // flushes keep a trim slack; a sweep keeps none
		t.Fatal(err)
	}
	for _, f := range []store.RunFilter{{Status: store.StatusFailed}, {Trigger: "listener"}, {Outcome: store.OutcomeDeadLettered}, {Operation: "op0"}} {
		if got := storedIDs(t, s, f); slices.Contains(got, first.ID) {
			t.Errorf("after its deletion %+v still finds %s", f, first.ID)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Ten runs of four set fields each: forty postings, none left over.
	if n, err := store.CountPostings(path); err != nil || n != 40 {
		t.Errorf("%d postings for 10 runs of 4 fields (%v), want 40", n, err)
	}
}

// A filter value no run has answers without looking at any run, however
// many are stored; a combination no run matches looks at few. (A query
// also reads the index entries of the tail, at most 512 runs not yet on
// the posting lists.)
func TestBoltQueryMatchingNothingDoesNotScan(t *testing.T) {
	t.Parallel()
	s := openBolt(t, store.BoltOptions{})
	for i := range 5000 {
		status := store.StatusSucceeded
		if i%100 == 0 {
			status = store.StatusFailed // only in op0... and op1, op2: i%3 varies
		}
		if err := s.PutRun(t.Context(), historyRun(i, status)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		f       store.RunFilter
		maxSeen int64
	}{
		{store.RunFilter{Status: store.StatusFailed, Operation: "nosuch"}, 0},
		{store.RunFilter{Project: "nosuch"}, 0},
		{store.RunFilter{Status: store.StatusTimedOut}, 0},
		{store.RunFilter{Trigger: "schedule"}, 0},
		{store.RunFilter{Since: time.Now().Add(time.Hour)}, 1},
		{store.RunFilter{Status: store.StatusFailed, Operation: "op1"}, 20}, // 17 of 50 failed runs are op1
	} {
		before := s.Examined()
		if _, err := s.Runs(t.Context(), tc.f); err != nil {
			t.Fatal(err)
		}
		if seen := s.Examined() - before; seen > tc.maxSeen {
			t.Errorf("%+v looked at %d stored runs, want at most %d", tc.f, seen, tc.maxSeen)
		}
	}
}

// A store file mostly free (here: its retention lowered from 20,000 runs
// to 100) is compacted when it opens, and keeps its newest runs.
func TestBoltCompactsASparseFileAtOpen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "opsrunner.db")
	s, err := store.OpenBolt(path, store.BoltOptions{Retention: store.Retention{MaxRuns: 20_000}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20_000 {
		if err := s.PutRun(t.Context(), historyRun(i, store.StatusSucceeded)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	big := fileSize(t, path)
	s, err = store.OpenBolt(path, store.BoltOptions{Retention: store.Retention{MaxRuns: 100}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if small := fileSize(t, path); small > big/4 {
		t.Errorf("file of 20,000 runs %d bytes, after reopening with 100: %d bytes", big, small)
	}
	got := storedIDs(t, s, store.RunFilter{Operation: "op1"})
	if len(got) != 34 || got[0] != "run-0019999" {
		t.Errorf("after compaction op1 runs = %d from %v, want 34 from run-0019999", len(got), got[:min(len(got), 1)])
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
