package store_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/opsrunner/opsrunner/internal/baseline"
	"github.com/opsrunner/opsrunner/store"
)

// Flush returns once the runs put before it are in the file, written by
// the flusher at once (not at its next tick): concurrent callers each find
// their own run in a copy of the file taken when their Flush returned.
func TestBoltFlushWaitsForTheBatchHoldingTheRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "opsrunner.db")
	s, err := store.OpenBolt(path, store.BoltOptions{FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const callers = 16
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := ulid.Make().String()
			fin := time.Now()
			r := store.Run{ID: id, Project: "p", Status: store.StatusSucceeded, StartedAt: fin, FinishedAt: &fin}
			if err := s.PutRun(t.Context(), r); err != nil {
				t.Error(err)
				return
			}
			if err := s.Flush(t.Context()); err != nil {
				t.Error(err)
				return
			}
			if i%4 == 0 { // a few look at the file itself
				assertInCopy(t, path, filepath.Join(t.TempDir(), "copy.db"), id)
			}
		}()
	}
	wg.Wait()
	if n := s.Buffered(); n != 0 {
		t.Fatalf("%d runs still buffered after every Flush returned", n)
	}
}

// assertInCopy copies the store file at path to dst and finds run id in it.
func assertInCopy(t *testing.T, path, dst, id string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Error(err)
		return
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Error(err)
		return
	}
	c, err := store.OpenBolt(dst, store.BoltOptions{})
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close()
	if r, err := c.Run(t.Context(), id); err != nil || r.Status != store.StatusSucceeded {
		t.Errorf("run %s in the file after Flush: %+v, %v", id, r, err)
	}
}

// Flush gives up when its context ends; nothing buffered returns at once.
func TestBoltFlushContext(t *testing.T) {
	t.Parallel()
	s := openBolt(t, store.BoltOptions{FlushInterval: time.Hour})
	if err := s.Flush(t.Context()); err != nil {
		t.Fatalf("flush with nothing buffered: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.PutRun(t.Context(), store.Run{ID: ulid.Make().String(), StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// Either the flusher was quicker or the cancelled context is reported.
	if err := s.Flush(ctx); err != nil && ctx.Err() == nil {
		t.Fatalf("flush: %v", err)
	}
	if err := s.Flush(t.Context()); err != nil || s.Buffered() != 0 {
		t.Fatalf("flush: %v, %d runs buffered", err, s.Buffered())
	}
}

// BenchmarkDurablePutRun is what a webhook now pays for its record: a
// finished run put, then Flush (one fsync per batch). serial is one caller
// (a batch per run: the cost of a flush); parallel has GOMAXPROCS×16
// callers sharing batches (group commit), with either page size.
// cpu-ns/op is this process's CPU per run.
func BenchmarkDurablePutRun(b *testing.B) {
	for _, tc := range []struct {
		name        string
		parallelism int
		pageSize    int
	}{{"serial", 0, 16 << 10}, {"parallel/page=16K", 16, 16 << 10}, {"parallel/page=64K", 16, 64 << 10}} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := store.OpenBolt(filepath.Join(b.TempDir(), "opsrunner.db"), store.BoltOptions{PageSize: tc.pageSize})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			logs := []store.LogLine{{Time: time.Now(), Level: "info", Message: "handled order 42"}}
			put := func() {
				fin := time.Now()
				r := store.Run{ID: ulid.Make().String(), Project: "hello", Operation: "hello", Trigger: "webhook",
					Status: store.StatusSucceeded, StartedAt: fin, FinishedAt: &fin, Agent: "a1", Logs: logs}
				if err := s.PutRun(ctx, r); err != nil {
					b.Fatal(err)
				}
				if err := s.Flush(ctx); err != nil {
					b.Fatal(err)
				}
			}
			cpu0 := baseline.CPUTime()
			if tc.parallelism == 0 {
				for b.Loop() {
					put()
				}
			} else {
				b.SetParallelism(tc.parallelism)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						put()
					}
				})
			}
			b.ReportMetric(float64((baseline.CPUTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// A write that fails keeps its runs buffered for the next one, except a
// run whose newer version was put while it was under way: the newer one
// is written, not the failed write's.
func TestBoltFailedWriteKeepsItsRunsButNotStaleVersions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now()
	kept := store.Run{ID: ulid.Make().String(), Project: "p", Operation: "a", Status: store.StatusSucceeded, StartedAt: now, FinishedAt: &now}
	bad := store.Run{ID: ulid.Make().String(), Project: "p", Operation: "b", Status: store.StatusSucceeded, StartedAt: now, FinishedAt: &now,
		Input: []byte(`{not json`)} // cannot be encoded: the write holding it fails
	fixed := bad
	fixed.Input = []byte(`{"ok":true}`)

	var s *store.Bolt
	var once sync.Once
	s = openBolt(t, store.BoltOptions{FlushInterval: time.Hour, OnFlush: func(_ int, _ time.Duration, err error) {
		if err != nil {
			// Put while the failed write is still under way.
			once.Do(func() {
				if err := s.PutRun(ctx, fixed); err != nil {
					t.Error(err)
				}
			})
		}
	}})
	for _, r := range []store.Run{kept, bad} {
		if err := s.PutRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctx); err == nil {
		t.Fatal("Flush of a run that cannot be encoded: no error")
	}
	if got := s.Buffered(); got != 2 {
		t.Fatalf("after the failed write %d runs buffered, want 2", got)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("second Flush: %v", err)
	}
	if got := s.Buffered(); got != 0 {
		t.Fatalf("after the second write %d runs buffered, want 0", got)
	}
	for _, want := range []store.Run{kept, fixed} {
		got, err := s.Run(ctx, want.ID)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Input) != string(want.Input) || got.Operation != want.Operation {
			t.Errorf("run %s: operation %q input %s, want %q %s", want.ID, got.Operation, got.Input, want.Operation, want.Input)
		}
	}
}
