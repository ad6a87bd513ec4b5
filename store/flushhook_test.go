package store_test

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/opsrunner/opsrunner/store"
)

// OnFlush is told of each group commit: the runs it wrote and its outcome
// (the agent's store flush latency histogram observes it).
func TestBoltOnFlushIsToldOfEachWrite(t *testing.T) {
	t.Parallel()
	type write struct {
		runs int
		err  error
	}
	var mu sync.Mutex
	var writes []write
	s, err := store.OpenBolt(filepath.Join(t.TempDir(), "opsrunner.db"), store.BoltOptions{
		FlushInterval: time.Hour,
		OnFlush: func(runs int, took time.Duration, err error) {
			if took < 0 {
				t.Errorf("flush took %v", took)
			}
			mu.Lock()
			writes = append(writes, write{runs, err})
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	putFinishedAndFlush(t, s, 3)
	putFinishedAndFlush(t, s, 0) // nothing buffered: no write
	mu.Lock()
	defer mu.Unlock()
	if len(writes) != 1 || writes[0].runs != 3 || writes[0].err != nil {
		t.Fatalf("writes = %+v, want one of 3 runs", writes)
	}
}

// With SyncLog, OnLogAppend is told of each append to the run log: the
// runs a Flush made durable, once; a Flush with nothing new appends none.
// OnFlush is not told of them (bbolt writes at its own pace).
func TestBoltOnLogAppendIsToldOfEachAppend(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var appends, flushes []int
	s, err := store.OpenBolt(filepath.Join(t.TempDir(), "opsrunner.db"), store.BoltOptions{
		FlushInterval: time.Hour, SyncLog: true,
		OnLogAppend: func(runs int, took time.Duration, err error) {
			if took < 0 || err != nil {
				t.Errorf("append of %d runs took %v: %v", runs, took, err)
			}
			mu.Lock()
			appends = append(appends, runs)
			mu.Unlock()
		},
		OnFlush: func(runs int, _ time.Duration, _ error) {
			mu.Lock()
			flushes = append(flushes, runs)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, n := range []int{2, 0, 1} {
		putFinishedAndFlush(t, s, n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(appends) != 2 || appends[0] != 2 || appends[1] != 1 || len(flushes) != 0 {
		t.Fatalf("appends %v and bbolt writes %v, want appends of 2 and 1 runs and no write", appends, flushes)
	}
}

// putFinishedAndFlush puts n finished runs in s, then flushes it.
func putFinishedAndFlush(t *testing.T, s store.Store, n int) {
	t.Helper()
	for range n {
		fin := time.Now()
		r := store.Run{ID: ulid.Make().String(), Project: "p", Status: store.StatusSucceeded, StartedAt: fin, FinishedAt: &fin}
		if err := s.PutRun(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}
