package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/opsrunner/opsrunner/internal/testenv"
	"github.com/opsrunner/opsrunner/store"
)

// Runs stored before the filter sets existed (here: the sets and their
// marker deleted) are indexed when a store opens the prefix, and a sweep
// takes deleted runs out of the sets.
func TestRedisIndexesRunsStoredBefore(t *testing.T) {
	t.Parallel()
	srv := testenv.Redis(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { client.Close() })
	ctx := t.Context()
	const prefix = "history:"
	s, err := store.OpenRedis(client, prefix, store.RedisOptions{Retention: store.Retention{MaxRuns: 20}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		r := store.Run{ID: fmt.Sprintf("run-%03d", i), Project: "p", Trigger: "listener", Status: store.StatusSucceeded,
			Outcome: store.OutcomeCommitted, StartedAt: time.Now()}
		if i%10 == 0 {
			r.Outcome = store.OutcomeDeadLettered
		}
		if err := s.PutRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	sets, err := client.Keys(ctx, prefix+"runs:by:*").Result()
	if err != nil || len(sets) == 0 {
		t.Fatalf("filter sets %v, %v", sets, err)
	}
	if err := client.Del(ctx, append(sets, prefix+"runs:indexed")...).Err(); err != nil {
		t.Fatal(err)
	}
	s, err = store.OpenRedis(client, prefix, store.RedisOptions{Retention: store.Retention{MaxRuns: 20}})
	if err != nil {
		t.Fatal(err)
	}
	count := func(f store.RunFilter) int {
		t.Helper()
		runs, err := s.Runs(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		return len(runs)
	}
	if n := count(store.RunFilter{Outcome: store.OutcomeDeadLettered}); n != 3 {
		t.Fatalf("after reindexing, dead-lettered runs = %d, want 3", n)
	}
	if err := s.Sweep(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := count(store.RunFilter{Outcome: store.OutcomeDeadLettered}); n != 2 {
		t.Fatalf("after the sweep, dead-lettered runs = %d, want 2 (run-010, run-020)", n)
	}
	if n, err := client.ZCard(ctx, prefix+"runs:by:c:"+store.OutcomeDeadLettered).Result(); err != nil || n != 2 {
		t.Fatalf("after the sweep the dead-lettered set holds %d ids (%v), want 2", n, err)
	}
}
