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
	for range 3 {
		fin := time.Now()
		r := store.Run{ID: ulid.Make().String(), Project: "p", Status: store.StatusSucceeded, StartedAt: fin, FinishedAt: &fin}
		if err := s.PutRun(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(t.Context()); err != nil { // nothing buffered: no write
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(writes) != 1 || writes[0].runs != 3 || writes[0].err != nil {
		t.Fatalf("writes = %+v, want one of 3 runs", writes)
	}
}
