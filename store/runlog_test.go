package store_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/store"
)

// logFiles lists the write-ahead log files beside the store at path.
func logFiles(t *testing.T, path string) []string {
	t.Helper()
	names, err := filepath.Glob(path + ".runlog.*")
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// checkLogged fails t unless s holds model's runs, each in its version
// there, and answers filters over them.
func checkLogged(t *testing.T, when string, s store.Store, model []store.Run) {
	t.Helper()
	store.CheckFiltersAgainst(t, when, s, model, []store.RunFilter{
		{Status: store.StatusRunning}, {Status: store.StatusSucceeded}, {Status: store.StatusFailed},
		{Operation: "op1"}, {Project: "p"}, {Outcome: store.OutcomeCommitted},
	})
	for _, want := range model {
		got, err := s.Run(t.Context(), want.ID)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if got.Status != want.Status || got.Outcome != want.Outcome {
			t.Fatalf("%s: run %s is %s/%s, want %s/%s", when, want.ID, got.Status, got.Outcome, want.Status, want.Outcome)
		}
	}
}

// putAndFlush puts runs in order, then flushes.
func putAndFlush(ctx context.Context, s store.Store, runs ...store.Run) error {
	for _, r := range runs {
		if err := s.PutRun(ctx, r); err != nil {
			return err
		}
	}
	return s.Flush(ctx)
}

func syncLogRun(i int, status string) store.Run {
	r := historyRun(i, status)
	if status != store.StatusRunning {
		r.Outcome = store.OutcomeCommitted
	}
	return r
}

// With SyncLog, a run whose Flush returned survives a crash that kept it
// from bbolt: the next open replays the log, and removes it.
func TestSyncLogKeepsFlushedRunsThroughACrash(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "opsrunner.db")
	s, err := store.OpenBolt(path, store.BoltOptions{SyncLog: true, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var model []store.Run
	for i := range 100 {
		versions := []store.Run{syncLogRun(i, store.StatusRunning)}
		if i%2 == 0 { // half of them end before the flush
			versions = append(versions, syncLogRun(i, store.StatusSucceeded))
		}
		if err := putAndFlush(t.Context(), s, versions...); err != nil {
			t.Fatal(err)
		}
		model = append(model, versions[len(versions)-1])
	}
	if err := s.Crash(); err != nil {
		t.Fatal(err)
	}
	if len(logFiles(t, path)) == 0 {
		t.Fatal("no run log after the crash: the runs went to bbolt, so this test proves nothing")
	}

	s, err = store.OpenBolt(path, store.BoltOptions{}) // replayed whatever SyncLog says
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkLogged(t, "replayed", s, model)
	if names := logFiles(t, path); len(names) != 0 {
		t.Errorf("run logs left after the replay: %v", names)
	}
}

// A record cut short by the crash (its Flush never returned) ends the
// replay of its file; the records before it are kept.
func TestSyncLogIgnoresATornTail(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "opsrunner.db")
	s, err := store.OpenBolt(path, store.BoltOptions{SyncLog: true, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := putAndFlush(t.Context(), s, syncLogRun(i, store.StatusSucceeded)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Crash(); err != nil {
		t.Fatal(err)
	}
	names := logFiles(t, path)
	if len(names) != 1 {
		t.Fatalf("run logs %v, want one", names)
	}
	info, err := os.Stat(names[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(names[0], info.Size()-3); err != nil {
		t.Fatal(err)
	}

	s, err = store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatalf("open after a torn log: %v", err)
	}
	defer s.Close()
	for i := range 10 {
		_, err := s.Run(t.Context(), syncLogRun(i, "").ID)
		if i < 9 && err != nil {
			t.Errorf("run %d: %v", i, err)
		}
		if i == 9 && err == nil {
			t.Error("the torn run was replayed")
		}
	}
}

// Concurrent puts and flushes while the flusher writes batches to bbolt
// and starts new log files: every flushed run's latest version is there
// after a crash, and bbolt catching up removes the files it covers.
func TestSyncLogUnderConcurrentFlushes(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "opsrunner.db")
	s, err := store.OpenBolt(path, store.BoltOptions{SyncLog: true, FlushInterval: 2 * time.Millisecond, MaxBatch: 16})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 60
	model := make([]store.Run, writers*each)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for j := range each {
				i := w*each + j
				r := syncLogRun(i, store.StatusSucceeded)
				if err := putAndFlush(t.Context(), s, syncLogRun(i, store.StatusRunning), r); err != nil {
					t.Error(err)
					return
				}
				model[i] = r
			}
		})
	}
	wg.Wait()
	if err := s.Crash(); err != nil {
		t.Fatal(err)
	}
	s, err = store.OpenBolt(path, store.BoltOptions{SyncLog: true, FlushInterval: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	checkLogged(t, "replayed", s, model)
	for i := range model {
		model[i].Status = store.StatusFailed
	}
	if err := putAndFlush(t.Context(), s, model...); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Buffered() > 0 || len(logFiles(t, path)) > 2 {
		if time.Now().After(deadline) {
			t.Fatalf("bbolt has not caught up: %d runs buffered, logs %v", s.Buffered(), logFiles(t, path))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if names := logFiles(t, path); len(names) != 0 {
		t.Errorf("run logs left after Close: %v", names)
	}
	s, err = store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkLogged(t, "after close", s, model)
}

// A data dir whose path holds glob characters finds its run log too.
func TestSyncLogInADirWithGlobCharacters(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data[1]*")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "opsrunner.db")
	s, err := store.OpenBolt(path, store.BoltOptions{SyncLog: true, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r := syncLogRun(1, store.StatusSucceeded)
	if err := putAndFlush(t.Context(), s, r); err != nil {
		t.Fatal(err)
	}
	if err := s.Crash(); err != nil {
		t.Fatal(err)
	}
	s, err = store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkLogged(t, "replayed", s, []store.Run{r})
}
