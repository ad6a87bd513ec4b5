package cluster_test

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/opsrunner/opsrunner/cluster"
	"github.com/opsrunner/opsrunner/cluster/clustertest"
	"github.com/opsrunner/opsrunner/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestLocal(t *testing.T) {
	t.Parallel()
	clustertest.Run(t, func(t *testing.T) cluster.Coordinator {
		c := cluster.NewLocal("agent-1")
		t.Cleanup(func() { c.Close() })
		return c
	})
}

var prefixes atomic.Int64

func newPrefix() string { return fmt.Sprintf("clustertest%d:", prefixes.Add(1)) }

func newClient(t *testing.T, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 500 * time.Millisecond,
		ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	return c
}

func newRedis(t *testing.T, client redis.UniversalClient, prefix string, opts cluster.RedisOptions) *cluster.Redis {
	c := cluster.NewRedis(client, prefix, opts)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRedis(t *testing.T) {
	t.Parallel()
	srv := testenv.Redis(t)
	clustertest.Run(t, func(t *testing.T) cluster.Coordinator {
		return newRedis(t, newClient(t, srv.Addr), newPrefix(), cluster.RedisOptions{})
	})
}

// Two agents (own clients, one prefix) compete for one lock: exactly one
// holds it until it releases, then the other can take it.
func TestRedisTwoAgentsOneLock(t *testing.T) {
	t.Parallel()
	srv := testenv.Redis(t)
	prefix := newPrefix()
	a := newRedis(t, newClient(t, srv.Addr), prefix, cluster.RedisOptions{})
	b := newRedis(t, newClient(t, srv.Addr), prefix, cluster.RedisOptions{})
	ctx := t.Context()
	la, err := a.Acquire(ctx, "msg", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // past the ttl: a keeps refreshing
	if _, err := b.Acquire(ctx, "msg", 300*time.Millisecond); !errors.Is(err, cluster.ErrHeld) {
		t.Fatalf("b.Acquire while a holds: err = %v, want ErrHeld", err)
	}
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
	lb, err := b.Acquire(ctx, "msg", 300*time.Millisecond)
	if err != nil {
		t.Fatalf("b.Acquire after a released: %v", err)
	}
	defer lb.Release(ctx)
	// Markers are shared too.
	if err := a.MarkProcessed(ctx, "msg", time.Minute); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Processed(ctx, "msg"); err != nil || !ok {
		t.Fatalf("b does not see a's marker: %v, %v", ok, err)
	}
}

// heartbeats calls c.Heartbeat for m every interval until stop is closed.
func heartbeats(t *testing.T, c *cluster.Redis, m cluster.Member, interval time.Duration, stop <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			_ = c.Heartbeat(t.Context(), m)
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()
	return done
}

// The first agent registered leads; when its heartbeats stop (a crash) the
// next oldest takes over within 5 s with the default TTLs.
func TestRedisLeaderFailover(t *testing.T) {
	t.Parallel()
	srv := testenv.Redis(t)
	prefix := newPrefix()
	a := newRedis(t, newClient(t, srv.Addr), prefix, cluster.RedisOptions{})
	b := newRedis(t, newClient(t, srv.Addr), prefix, cluster.RedisOptions{})
	now := time.Now().UTC()
	ma := cluster.Member{ID: "agent-a", StartedAt: now.Add(-time.Minute)}
	mb := cluster.Member{ID: "agent-b", StartedAt: now}

	stopA, stopB := make(chan struct{}), make(chan struct{})
	doneA := heartbeats(t, a, ma, time.Second, stopA)
	time.Sleep(100 * time.Millisecond)
	doneB := heartbeats(t, b, mb, time.Second, stopB)
	defer func() { close(stopB); <-doneB }()

	var (
		members []cluster.Member
		leader  string
		err     error
	)
	waitFor(t, 2*time.Second, "both registered", func() bool {
		members, leader, err = b.Members(t.Context())
		return err == nil && len(members) == 2
	})
	if !a.IsLeader() || b.IsLeader() {
		t.Fatalf("a leader %v, b leader %v; want a", a.IsLeader(), b.IsLeader())
	}
	if err != nil || leader != "agent-a" || len(members) != 2 || members[0].ID != "agent-a" || !members[0].Leader || members[1].Leader {
		t.Fatalf("members = %+v, leader %q, %v", members, leader, err)
	}

	close(stopA) // a crashes: no more heartbeats, no Close
	<-doneA
	crashed := time.Now()
	waitFor(t, 5*time.Second, "b takes over", b.IsLeader)
	t.Logf("leader failover took %s", time.Since(crashed).Round(time.Millisecond))
	if _, leader, _ := b.Members(t.Context()); leader != "agent-b" {
		t.Fatalf("leader = %q, want agent-b", leader)
	}
}

// A graceful Close hands leadership over at the successor's next heartbeat.
func TestRedisLeaderResignsOnClose(t *testing.T) {
	t.Parallel()
	srv := testenv.Redis(t)
	prefix := newPrefix()
	a := newRedis(t, newClient(t, srv.Addr), prefix, cluster.RedisOptions{})
	b := newRedis(t, newClient(t, srv.Addr), prefix, cluster.RedisOptions{})
	ctx := t.Context()
	now := time.Now().UTC()
	if err := a.Heartbeat(ctx, cluster.Member{ID: "a", StartedAt: now.Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	mb := cluster.Member{ID: "b", StartedAt: now}
	if err := b.Heartbeat(ctx, mb); err != nil {
		t.Fatal(err)
	}
	if !a.IsLeader() || b.IsLeader() {
		t.Fatalf("a leader %v, b leader %v", a.IsLeader(), b.IsLeader())
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Heartbeat(ctx, mb); err != nil {
		t.Fatal(err)
	}
	if !b.IsLeader() {
		t.Fatal("b did not take over at its first heartbeat after a closed")
	}
	if members, _, _ := b.Members(ctx); len(members) != 1 {
		t.Fatalf("closed agent still listed: %+v", members)
	}
}

// Redis restarts (losing everything): held leases report Lost, Check fences,
// and once Redis is back new Acquires work again.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	srv, err := testenv.StartRedis() // private: this test stops it
	if err != nil {
		testenv.Unavailable(t, "redis-server", err)
	}
	t.Cleanup(srv.Stop)
	c := newRedis(t, newClient(t, srv.Addr), newPrefix(), cluster.RedisOptions{})
	ctx := t.Context()
	l, err := c.Acquire(ctx, "msg", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	select {
	case <-l.Lost():
	case <-time.After(2 * time.Second):
		t.Fatal("lease not reported lost within 2s of Redis going down")
	}
	if err := l.Check(ctx); !errors.Is(err, cluster.ErrLeaseLost) {
		t.Fatalf("Check while Redis is down: err = %v, want ErrLeaseLost", err)
	}
	if err := c.Ping(ctx); err == nil {
		t.Fatal("Ping succeeded with Redis down")
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	var l2 cluster.Lease
	waitFor(t, 5*time.Second, "Acquire after restart", func() bool {
		l2, err = c.Acquire(ctx, "msg", 300*time.Millisecond)
		return err == nil
	})
	defer l2.Release(ctx)
	if err := l2.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release of the lost lease: %v", err)
	}
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Markers keep their Redis keys: a processed marker is done:<key> = "1",
// as agents before in-doubt markers wrote and read it; an in-doubt marker
// shares the key with its own value.
func TestRedisMarkerKeys(t *testing.T) {
	t.Parallel()
	srv := testenv.Redis(t)
	client, prefix := newClient(t, srv.Addr), newPrefix()
	c := newRedis(t, client, prefix, cluster.RedisOptions{})
	ctx := t.Context()
	if err := client.Set(ctx, prefix+"done:old", "1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if m, err := c.Marker(ctx, "old"); err != nil || m != (cluster.Marker{Processed: true}) {
		t.Fatalf("marker written as before reads %+v, %v", m, err)
	}
	if err := c.MarkProcessed(ctx, "new", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.MarkInDoubt(ctx, "doubt", "m-9", time.Minute); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"new": "1", "doubt": "in-doubt:m-9"} {
		if got, err := client.Get(ctx, prefix+"done:"+key).Result(); err != nil || got != want {
			t.Errorf("done:%s = %q, %v; want %q", key, got, err, want)
		}
	}
}
