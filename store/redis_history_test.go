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

// Retention holds at every write on Redis too, without a sweep: after each
// put the store keeps the newest runs, never more than MaxRuns and its
// trim slack, and a trimmed run leaves its filter sets.
func TestRedisRetentionHoldsAtEveryPut(t *testing.T) {
	t.Parallel()
	srv := testenv.Redis(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { client.Close() })
	ctx := t.Context()
	const prefix, maxRuns = "trim:", 100
	s, err := store.OpenRedis(client, prefix, store.RedisOptions{Retention: store.Retention{MaxRuns: maxRuns}})
	if err != nil {
		t.Fatal(err)
	}
	most := int64(maxRuns + store.TrimSlack(maxRuns))
	for i := range 500 {
		if err := s.PutRun(ctx, historyRun(i, store.StatusSucceeded)); err != nil {
			t.Fatal(err)
		}
		n, err := client.ZCard(ctx, prefix+"runs").Result()
		if err != nil || n < min(int64(i+1), maxRuns) || n > most {
			t.Fatalf("after %d runs: %d stored (%v), want %d to %d", i+1, n, err, min(i+1, maxRuns), most)
		}
	}
	runs, err := s.Runs(ctx, store.RunFilter{Operation: "op0", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	inSet, err := client.ZCard(ctx, prefix+"runs:by:o:op0").Result()
	if err != nil || inSet != int64(len(runs)) || runs[0].ID != "run-0000498" {
		t.Errorf("op0: %d runs from %s, its set %d ids (%v); want as many, from run-0000498", len(runs), runs[0].ID, inSet, err)
	}
}
