// Package agenttest runs real agents in other packages' tests: on free
// loopback ports, with a data dir of the test's, stopped when the test
// ends.
package agenttest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/agent"
)

// Config is agent.Defaults on free loopback ports (HTTP and the embedded
// broker), with a data dir of t's, the agent id id (empty: the one
// Defaults made up) and a short shutdown.
func Config(t testing.TB, id string) agent.Config {
	cfg := agent.Defaults()
	cfg.HTTPAddr, cfg.EmbeddedBrokerAddr, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
	cfg.ShutdownTimeout = agent.Duration(5 * time.Second)
	if id != "" {
		cfg.AgentID = id
	}
	return cfg
}

// Serve runs a until the test ends, and returns once it takes work (the
// test fails if it stops first or is not ready within 10 s). stop shuts it
// down earlier and waits (at most 20 s); it is idempotent.
func Serve(t testing.TB, a *agent.Agent) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent stopped with: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("agent did not stop within 20s")
		}
	})
	t.Cleanup(stop)
	select {
	case <-a.Started():
	case err := <-done:
		t.Fatalf("agent stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("agent not ready within 10s")
	}
	return stop
}
