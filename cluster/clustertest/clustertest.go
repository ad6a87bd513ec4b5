// Package clustertest is the conformance suite every cluster.Coordinator
// implementation passes: call Run from the implementation's tests with a
// constructor of fresh coordinators.
package clustertest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/cluster"
)

// NewCoordinator returns a fresh coordinator over empty shared state for one
// test and arranges for it to be closed when the test ends (Close is
// idempotent; tests may close it too).
type NewCoordinator func(t *testing.T) cluster.Coordinator

// Expirer is implemented by coordinators that can make a lease lapse on
// demand, as if its refreshes had failed. Run tests loss and fencing with it
// when the coordinator under test has it.
type Expirer interface {
	Expire(ctx context.Context, key string) error
}

// Run runs the conformance suite against coordinators made by newCoord.
func Run(t *testing.T, newCoord NewCoordinator) {
	for _, tc := range []struct {
		name string
		test func(*testing.T, cluster.Coordinator)
	}{
		{"AcquireRelease", testAcquireRelease},
		{"DistinctKeys", testDistinctKeys},
		{"LeaseOutlivesTTL", testLeaseOutlivesTTL},
		{"ConcurrentAcquire", testConcurrentAcquire},
		{"ExpiryAndFencing", testExpiry},
		{"CloseLosesLeases", testClose},
		{"AfterLost", testAfterLost},
		{"ProcessedMarkers", testProcessed},
		{"InDoubtMarkers", testInDoubt},
		{"Membership", testMembership},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.test(t, newCoord(t))
		})
	}
}

const ttl = 300 * time.Millisecond

func acquire(t *testing.T, c cluster.Coordinator, key string) cluster.Lease {
	t.Helper()
	l, err := c.Acquire(t.Context(), key, ttl)
	if err != nil {
		t.Fatalf("Acquire(%s): %v", key, err)
	}
	return l
}

func waitLost(t *testing.T, l cluster.Lease, within time.Duration) {
	t.Helper()
	select {
	case <-l.Lost():
	case <-time.After(within):
		t.Fatalf("Lost not closed within %s", within)
	}
}

func notLost(t *testing.T, l cluster.Lease) {
	t.Helper()
	select {
	case <-l.Lost():
		t.Fatal("Lost closed for a lease still held")
	default:
	}
}

func testAcquireRelease(t *testing.T, c cluster.Coordinator) {
	ctx := t.Context()
	l := acquire(t, c, "msg-1")
	if l.Token() == "" {
		t.Fatal("empty token")
	}
	if err := l.Check(ctx); err != nil {
		t.Fatalf("Check on a held lease: %v", err)
	}
	if _, err := c.Acquire(ctx, "msg-1", ttl); !errors.Is(err, cluster.ErrHeld) {
		t.Fatalf("second Acquire: err = %v, want ErrHeld", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	if err := l.Check(ctx); !errors.Is(err, cluster.ErrLeaseLost) {
		t.Fatalf("Check after Release: err = %v, want ErrLeaseLost", err)
	}
	l2 := acquire(t, c, "msg-1")
	defer l2.Release(ctx)
	if l2.Token() == l.Token() {
		t.Fatal("token reused across acquisitions")
	}
	// A stale lease's Release must not free the new holder's lock.
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l2.Check(ctx); err != nil {
		t.Fatalf("new holder after stale Release: %v", err)
	}
}

func testDistinctKeys(t *testing.T, c cluster.Coordinator) {
	a, b := acquire(t, c, "a"), acquire(t, c, "b")
	defer a.Release(t.Context())
	defer b.Release(t.Context())
	if a.Token() == b.Token() {
		t.Fatal("two leases share a token")
	}
}

func testLeaseOutlivesTTL(t *testing.T, c cluster.Coordinator) {
	l := acquire(t, c, "long-run")
	defer l.Release(t.Context())
	time.Sleep(3 * ttl) // refreshed meanwhile
	notLost(t, l)
	if err := l.Check(t.Context()); err != nil {
		t.Fatalf("Check after 3×ttl: %v", err)
	}
	if _, err := c.Acquire(t.Context(), "long-run", ttl); !errors.Is(err, cluster.ErrHeld) {
		t.Fatalf("Acquire of a refreshed lock: err = %v, want ErrHeld", err)
	}
}

func testConcurrentAcquire(t *testing.T, c cluster.Coordinator) {
	var (
		wg     sync.WaitGroup
		won    atomic.Int32
		leases = make(chan cluster.Lease, 16)
	)
	for range 16 {
		wg.Go(func() {
			l, err := c.Acquire(t.Context(), "contended", ttl)
			switch {
			case err == nil:
				won.Add(1)
				leases <- l
			case !errors.Is(err, cluster.ErrHeld):
				t.Errorf("Acquire: %v", err)
			}
		})
	}
	wg.Wait()
	close(leases)
	if won.Load() != 1 {
		t.Fatalf("%d goroutines acquired one key, want exactly 1", won.Load())
	}
	for l := range leases {
		l.Release(t.Context())
	}
}

func testExpiry(t *testing.T, c cluster.Coordinator) {
	e, ok := c.(Expirer)
	if !ok {
		t.Skip("coordinator cannot expire leases on demand")
	}
	ctx := t.Context()
	l := acquire(t, c, "fenced")
	if err := e.Expire(ctx, "fenced"); err != nil {
		t.Fatal(err)
	}
	waitLost(t, l, 3*ttl)
	if err := l.Check(ctx); !errors.Is(err, cluster.ErrLeaseLost) {
		t.Fatalf("Check after loss: err = %v, want ErrLeaseLost (fencing)", err)
	}
	l2 := acquire(t, c, "fenced") // the key is free again
	defer l2.Release(ctx)
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release of a lost lease: %v", err)
	}
	if err := l2.Check(ctx); err != nil {
		t.Fatalf("the lost lease's Release freed the new holder: %v", err)
	}
}

func testClose(t *testing.T, c cluster.Coordinator) {
	l := acquire(t, c, "closing")
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitLost(t, l, time.Second)
	if err := l.Check(t.Context()); !errors.Is(err, cluster.ErrLeaseLost) {
		t.Fatalf("Check after Close: err = %v, want ErrLeaseLost", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.Acquire(t.Context(), "after-close", ttl); err == nil {
		t.Fatal("Acquire after Close succeeded")
	}
}

// testAfterLost: functions registered with AfterLost run once the lease is
// lost, unless stopped before; registering on a lost lease runs at once.
func testAfterLost(t *testing.T, c cluster.Coordinator) {
	l := acquire(t, c, "watched")
	ran := make(chan string, 3)
	stopA := l.AfterLost(func() { ran <- "a" })
	stopB := l.AfterLost(func() { ran <- "b" })
	if !stopA() {
		t.Fatal("stop of a pending AfterLost = false, want true")
	}
	if stopA() {
		t.Fatal("second stop = true, want false")
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case got := <-ran:
		if got != "b" {
			t.Fatalf("%q ran, want b", got)
		}
	case <-time.After(time.Second):
		t.Fatal("AfterLost function did not run within 1s of losing the lease")
	}
	if stopB() {
		t.Fatal("stop after it ran = true, want false")
	}
	l.AfterLost(func() { ran <- "late" })
	select {
	case got := <-ran:
		if got != "late" {
			t.Fatalf("%q ran, want late", got)
		}
	case <-time.After(time.Second):
		t.Fatal("AfterLost on a lost lease did not run")
	}
	select {
	case got := <-ran:
		t.Fatalf("%q ran too", got)
	case <-time.After(50 * time.Millisecond):
	}
}

func testProcessed(t *testing.T, c cluster.Coordinator) {
	ctx := t.Context()
	check := func(key string, want bool) {
		t.Helper()
		got, err := c.Processed(ctx, key)
		if err != nil || got != want {
			t.Fatalf("Processed(%s) = %v, %v; want %v", key, got, err, want)
		}
	}
	check("m1", false)
	if err := c.MarkProcessed(ctx, "m1", 400*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := c.MarkProcessed(ctx, "m2", 0); err != nil { // default retention
		t.Fatal(err)
	}
	check("m1", true)
	check("m2", true)
	check("m3", false)
	time.Sleep(600 * time.Millisecond)
	check("m1", false)
	check("m2", true)
}

// An in-doubt marker carries its message id, is no processed marker, and
// expires like one; the two kinds replace each other on one key.
func testInDoubt(t *testing.T, c cluster.Coordinator) {
	ctx := t.Context()
	check := func(key string, want cluster.Marker) {
		t.Helper()
		got, err := c.Marker(ctx, key)
		if err != nil || got != want {
			t.Fatalf("Marker(%s) = %+v, %v; want %+v", key, got, err, want)
		}
		done, err := c.Processed(ctx, key)
		if err != nil || done != want.Processed {
			t.Fatalf("Processed(%s) = %v, %v; want %v", key, done, err, want.Processed)
		}
	}
	check("k1", cluster.Marker{})
	if err := c.MarkInDoubt(ctx, "k1", "ID:broker-1:7", 400*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := c.MarkInDoubt(ctx, "k2", "m-2", 0); err != nil { // default retention
		t.Fatal(err)
	}
	if err := c.MarkInDoubt(ctx, "k3", "", 0); !errors.Is(err, cluster.ErrNoMessageID) {
		t.Fatalf("MarkInDoubt without a message id: err = %v, want ErrNoMessageID", err)
	}
	check("k1", cluster.Marker{InDoubt: "ID:broker-1:7"})
	check("k3", cluster.Marker{})
	if err := c.MarkProcessed(ctx, "k2", 0); err != nil { // the confirmed commit
		t.Fatal(err)
	}
	check("k2", cluster.Marker{Processed: true})
	if err := c.MarkInDoubt(ctx, "k2", "m-3", 0); err != nil {
		t.Fatal(err)
	}
	check("k2", cluster.Marker{InDoubt: "m-3"})
	time.Sleep(600 * time.Millisecond)
	check("k1", cluster.Marker{})
}

func testMembership(t *testing.T, c cluster.Coordinator) {
	ctx := t.Context()
	started := time.Now().UTC().Truncate(time.Millisecond)
	m := cluster.Member{ID: "agent-1", Address: "127.0.0.1:8080", Capacity: 4, Version: "test", StartedAt: started}
	for inFlight := range 3 {
		m.InFlight = inFlight
		if err := c.Heartbeat(ctx, m); err != nil {
			t.Fatal(err)
		}
		members, leader, err := c.Members(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(members) != 1 {
			t.Fatalf("members = %+v, want one", members)
		}
		got := members[0]
		if leader != "agent-1" || !got.Leader || got.ID != "agent-1" || got.Address != m.Address ||
			got.Capacity != 4 || got.InFlight != inFlight || !got.StartedAt.Equal(started) || got.LastSeen.IsZero() {
			t.Fatalf("heartbeat %d: members = %+v, leader %q", inFlight, got, leader)
		}
	}
}
