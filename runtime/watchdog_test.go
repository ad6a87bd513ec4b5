package runtime

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"sync"
	"testing"
	"time"
	"weak"

	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// The memory watchdog interrupts the run that grew, not the innocent runs
// active beside it. Not parallel: the watchdog judges the whole process's
// heap, so other tests' allocations would blur what these measure.

const (
	// memoryBomb grows the heap steadily through a guarded built-in.
	memoryBomb = `function handle() { let a = []; for (;;) a.push("x".repeat(1e5) + a.length) }`
	// bufferBomb grows it faster.
	bufferBomb = `function handle() { let a = []; for (;;) a.push(new Uint8Array(1 << 20)) }`
	// innocent is slow (a few hundred ms) but small.
	innocent = `function handle(e) { let s = 0; for (let i = 0; i < 2e6; i++) s += i % 7; return {n: e.n, s, pad: "y".repeat(100)} }`
)

// TestMemoryWatchdogSparesInnocentRuns runs a memory bomb beside innocent
// runs of another project that started BEFORE it (the old watchdog killed
// the oldest run), trial after trial: the bomb fails with ErrMemoryLimit,
// every innocent run succeeds.
func TestMemoryWatchdogSparesInnocentRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates hundreds of MiB")
	}
	e := newEngine(t, Config{MemoryLimit: 64 << 20})
	bombs := []*scripts.Project{
		newProject(t, "bomb", op{name: "main", src: memoryBomb, timeout: time.Minute}),
		newProject(t, "bomb", op{name: "main", src: bufferBomb, timeout: time.Minute}),
	}
	other := newProject(t, "other", op{name: "main", src: innocent, timeout: time.Minute})
	const trials, innocents = 10, 4
	misfires := 0
	for trial := range trials {
		var wg sync.WaitGroup
		results := make([]Result, innocents)
		for i := range innocents {
			wg.Go(func() {
				results[i] = e.Run(context.Background(), Invocation{RunID: fmt.Sprint("innocent-", i), Project: other, Operation: "main", Event: map[string]any{"n": i}})
			})
		}
		waitActive(t, e, innocents) // the innocent runs are the oldest
		res := e.Run(context.Background(), Invocation{RunID: "bomb", Project: bombs[trial%2], Operation: "main"})
		wg.Wait()
		if !errors.Is(res.Err, ErrMemoryLimit) || res.Status != store.StatusFailed {
			t.Errorf("trial %d: bomb: status %s err %v, want failed with the memory limit", trial, res.Status, res.Err)
		}
		for i, r := range results {
			if r.Status != store.StatusSucceeded {
				misfires++
				t.Errorf("trial %d: innocent run %d: status %s err %v", trial, i, r.Status, r.Err)
			}
		}
	}
	t.Logf("%d trials × %d innocent runs beside a memory bomb: %d innocent runs interrupted", trials, innocents, misfires)
}

// waitActive waits until n runs are active in e.
func waitActive(t *testing.T, e *Engine, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.watch.mu.Lock()
		active := len(e.watch.active)
		e.watch.mu.Unlock()
		if active >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d runs active after 10s, want %d", active, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestMemoryVictimIsCollected: once a run interrupted for memory has
// ended, nothing of the engine keeps its runtime (not even a stopped
// timer's function): the next GC frees it.
func TestMemoryVictimIsCollected(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates hundreds of MiB")
	}
	e := newEngine(t, Config{MemoryLimit: 128 << 20, NoPrewarm: true, Runtimes: 1})
	v, err := newVM(e)
	if err != nil {
		t.Fatal(err)
	}
	rt := weak.Make(v.rt)
	e.pool <- v
	v = nil
	p := newProject(t, "bomb", op{name: "main", src: memoryBomb, timeout: time.Minute})
	res := e.Run(context.Background(), Invocation{RunID: "bomb", Project: p, Operation: "main"})
	if !errors.Is(res.Err, ErrMemoryLimit) {
		t.Fatalf("status %s err %v", res.Status, res.Err)
	}
	goruntime.GC()
	if rt.Value() != nil {
		t.Fatal("the interrupted runtime is still reachable after the run ended and a GC")
	}
}
