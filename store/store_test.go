package store_test

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	"github.com/opsrunner/opsrunner/internal/baseline"
	"github.com/opsrunner/opsrunner/internal/testenv"
	"github.com/opsrunner/opsrunner/store"
	"github.com/opsrunner/opsrunner/store/storetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func openBolt(t *testing.T, opts store.BoltOptions) *store.Bolt {
	t.Helper()
	s, err := store.OpenBolt(filepath.Join(t.TempDir(), "opsrunner.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestBolt(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store { return openBolt(t, store.BoltOptions{}) })
	storetest.RunRetention(t, func(t *testing.T, r store.Retention) store.Store {
		return openBolt(t, store.BoltOptions{Retention: r})
	})
}

// The conformance suite holds when Flush writes to the run log.
func TestBoltSyncLog(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store { return openBolt(t, store.BoltOptions{SyncLog: true}) })
	storetest.RunRetention(t, func(t *testing.T, r store.Retention) store.Store {
		return openBolt(t, store.BoltOptions{Retention: r, SyncLog: true})
	})
}

// New store files get 16 KiB pages; a file made with another page size
// (4 KiB and 64 KiB stores were made before) keeps its own and works as
// before.
func TestBoltPageSize(t *testing.T) {
	t.Parallel()
	for _, existing := range []int{0, 4096, 64 << 10} {
		t.Run(fmt.Sprint(existing), func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "opsrunner.db")
			if existing != 0 {
				db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: existing})
				if err != nil {
					t.Fatal(err)
				}
				db.Close()
			}
			s, err := store.OpenBolt(path, store.BoltOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			run := store.Run{ID: ulid.Make().String(), Project: "p", Operation: "op", Status: store.StatusSucceeded, StartedAt: time.Now()}
			if err := s.PutRun(ctx, run); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			got := db.Info().PageSize
			db.Close()
			if want := cmp.Or(existing, 16<<10); got != want {
				t.Fatalf("page size %d, want %d", got, want)
			}
			s, err = store.OpenBolt(path, store.BoltOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if r, err := s.Run(ctx, run.ID); err != nil || r.Operation != "op" {
				t.Fatalf("reopened: %+v, %v", r, err)
			}
		})
	}
}

var prefixes atomic.Int64

func openRedis(t *testing.T, opts store.RedisOptions) *store.Redis {
	t.Helper()
	srv := testenv.Redis(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { client.Close() })
	prefix := fmt.Sprintf("storetest%d:", prefixes.Add(1))
	s, err := store.OpenRedis(client, prefix, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRedis(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store { return openRedis(t, store.RedisOptions{}) })
	storetest.RunRetention(t, func(t *testing.T, r store.Retention) store.Store {
		return openRedis(t, store.RedisOptions{Retention: r})
	})
}

// A deploy on one agent reaches the other agents' watchers.
func TestRedisWatchAcrossAgents(t *testing.T) {
	t.Parallel()
	srv := testenv.Redis(t)
	clientA := redis.NewClient(&redis.Options{Addr: srv.Addr})
	clientB := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { clientA.Close(); clientB.Close() })
	// Two agents: one prefix, each with its own client.
	prefix := fmt.Sprintf("storetest-shared%d:", prefixes.Add(1))
	a, err := store.OpenRedis(clientA, prefix, store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := store.OpenRedis(clientB, prefix, store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	changes := b.Watch(t.Context())
	start := time.Now()
	if err := a.SetState(t.Context(), "orders/in", false); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-changes:
		if c != (store.Change{Kind: store.ChangeState, Key: "orders/in"}) {
			t.Fatalf("got %+v", c)
		}
		t.Logf("change reached the other agent in %s", time.Since(start))
	case <-time.After(time.Second):
		t.Fatal("change did not reach the other agent within 1s")
	}
	if on, ok, err := b.State(t.Context(), "orders/in"); err != nil || !ok || on {
		t.Fatalf("other agent reads %v, %v, %v", on, ok, err)
	}
}

// Close makes buffered runs durable: a reopened store finds them.
func TestBoltCloseFlushes(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "opsrunner.db")
	s, err := store.OpenBolt(path, store.BoltOptions{FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	id := ulid.Make().String()
	if err := s.PutRun(t.Context(), store.Run{ID: id, Project: "p", Status: store.StatusSucceeded, StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r, err := s.Run(t.Context(), id); err != nil || r.Status != store.StatusSucceeded {
		t.Fatalf("after reopen: %+v, %v", r, err)
	}
}

// The flusher writes buffered runs by itself within FlushInterval, and early
// once MaxBatch runs wait.
func TestBoltFlusher(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts store.BoltOptions
		runs int
	}{
		{"interval", store.BoltOptions{FlushInterval: 20 * time.Millisecond}, 1},
		{"batch", store.BoltOptions{FlushInterval: time.Hour, MaxBatch: 8}, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "opsrunner.db")
			s, err := store.OpenBolt(path, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for range tc.runs {
				if err := s.PutRun(t.Context(), store.Run{ID: ulid.Make().String(), StartedAt: time.Now()}); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(2 * time.Second)
			for s.Buffered() > 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%d runs still buffered after 2s", s.Buffered())
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}

// Listing stays quick over a full retained history (10k runs), filtered by
// a field of the index (operation) or not (outcome).
func TestBoltRunsLargeHistory(t *testing.T) {
	t.Parallel()
	s := openBolt(t, store.BoltOptions{})
	now := time.Now()
	for i := range 10000 {
		op, outcome := "common", store.OutcomeCommitted
		if i%1000 == 0 {
			op, outcome = "rare", store.OutcomeDeadLettered
		}
		r := store.Run{ID: ulid.MustNew(ulid.Timestamp(now.Add(time.Duration(i)*time.Millisecond)), ulid.DefaultEntropy()).String(),
			Project: "p", Operation: op, Status: store.StatusSucceeded, Outcome: outcome, StartedAt: now,
			Logs: []store.LogLine{{Message: "some log line"}}}
		if err := s.PutRun(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, f := range []store.RunFilter{{Operation: "rare"}, {Outcome: store.OutcomeDeadLettered}} {
		start := time.Now()
		runs, err := s.Runs(t.Context(), f)
		took := time.Since(start)
		if err != nil || len(runs) != 10 {
			t.Fatalf("%+v: rare runs = %d, %v", f, len(runs), err)
		}
		t.Logf("%+v: filtered scan of 10k runs: %s", f, took)
		if took > 500*time.Millisecond {
			t.Fatalf("%+v: filtered scan of 10k runs took %s", f, took)
		}
	}
}

// BenchmarkPutRun simulates one webhook: a run written as running, then as
// finished.
func BenchmarkPutRun(b *testing.B) {
	s, err := store.OpenBolt(filepath.Join(b.TempDir(), "opsrunner.db"), store.BoltOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	logs := []store.LogLine{{Time: time.Now(), Level: "info", Message: "handled order 42"}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := store.Run{ID: ulid.Make().String(), Project: "hello", Operation: "hello", Trigger: "webhook",
				Status: store.StatusRunning, StartedAt: time.Now(), Agent: "a1"}
			if err := s.PutRun(ctx, r); err != nil {
				b.Fatal(err)
			}
			fin := time.Now()
			r.Status, r.FinishedAt, r.Logs, r.Result = store.StatusSucceeded, &fin, logs, []byte(`{"ok":true}`)
			if err := s.PutRun(ctx, r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.StopTimer()
	if err := s.Flush(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFlushBatch records listener runs flushed every k runs; cpu-ns/op
// is this process's CPU per run, fsync waits excluded (MaxBatch's default
// weighs it against memory: see BoltOptions.MaxBatch).
func BenchmarkFlushBatch(b *testing.B) {
	for _, k := range []int{512, 2048, 8192} {
		for _, page := range []int{16 << 10, 64 << 10} {
			b.Run(fmt.Sprintf("%d/page=%dK", k, page>>10), func(b *testing.B) {
				flushBatches(b, k, page)
			})
		}
	}
}

func flushBatches(b *testing.B, k, pageSize int) {
	s, err := store.OpenBolt(filepath.Join(b.TempDir(), "opsrunner.db"), store.BoltOptions{MaxBatch: 1 << 20, FlushInterval: time.Hour, PageSize: pageSize})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	fin := time.Now()
	cpu0 := baseline.CPUTime()
	for i := range b.N {
		r := store.Run{ID: ulid.Make().String(), Project: "bench", Operation: "handle", Trigger: "listener",
			Status: store.StatusSucceeded, StartedAt: fin, FinishedAt: &fin, Agent: "a1", Listener: "bench/in",
			MessageID: "ID:abc-" + strconv.Itoa(i), Attempt: 1, Outcome: store.OutcomeCommitted,
			Chain: []store.Step{{Operation: "handle", Status: store.StatusSucceeded}}, Logs: []store.LogLine{}, Result: []byte(`{"ok":42}`)}
		if err := s.PutRun(ctx, r); err != nil {
			b.Fatal(err)
		}
		if i%k == k-1 {
			if err := s.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64((baseline.CPUTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// A sweep of many runs (more than one of its bounded transactions takes)
// keeps exactly the newest MaxRuns that are younger than MaxAge.
func TestBoltSweepsManyRunsInChunks(t *testing.T) {
	t.Parallel()
	const total, maxRuns = 25_000, 12_000
	s := openBolt(t, store.BoltOptions{Retention: store.Retention{MaxRuns: maxRuns, MaxAge: time.Hour}})
	ctx := context.Background()
	now := time.Now()
	for i := range total {
		started := now.Add(-time.Duration(total-i) * time.Millisecond)
		if i%1000 == 999 {
			started = now.Add(-2 * time.Hour) // too old, whatever its place
		}
		r := store.Run{ID: fmt.Sprintf("run-%06d", i), Project: "p", Operation: "op", Status: store.StatusSucceeded, StartedAt: started}
		if err := s.PutRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sweep(ctx, now); err != nil {
		t.Fatal(err)
	}
	var kept []store.Run
	for before := ""; ; {
		page, err := s.Runs(ctx, store.RunFilter{Before: before, Limit: 5000})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		kept = append(kept, page...)
		before = page[len(page)-1].ID
	}
	// The newest 12,000 ids, less the too-old ones among them (every 1000th).
	want := maxRuns - maxRuns/1000
	if len(kept) != want {
		t.Fatalf("kept %d runs, want %d", len(kept), want)
	}
	if kept[0].ID != fmt.Sprintf("run-%06d", total-1-1) || kept[len(kept)-1].ID != fmt.Sprintf("run-%06d", total-maxRuns) {
		t.Errorf("kept %s … %s, want the newest %d ids", kept[0].ID, kept[len(kept)-1].ID, maxRuns)
	}
	for _, r := range kept {
		if now.Sub(r.StartedAt) > time.Hour {
			t.Fatalf("kept %s, started %s ago", r.ID, now.Sub(r.StartedAt))
		}
	}
}

// A secret survives a reopen of the store file.
func TestBoltSecretSurvivesReopen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "opsrunner.db")
	s, err := store.OpenBolt(path, store.BoltOptions{FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 1, time.UTC)
	if err := s.PutSecret(t.Context(), "shop", "API_KEY", []byte("sealed"), at); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openBoltAt(t, path)
	if got, updated, err := s.Secret(t.Context(), "shop", "API_KEY"); err != nil || string(got) != "sealed" || !updated.Equal(at) {
		t.Fatalf("after reopen: %q, %v, %v", got, updated, err)
	}
}

func openBoltAt(t *testing.T, path string) *store.Bolt {
	t.Helper()
	s, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
