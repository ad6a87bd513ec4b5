package agent

import (
	"context"
	"testing"
)

// serveInternal starts an agent with id on free ports and a fresh data dir,
// for the package's internal tests and benchmarks, and stops it when tb
// ends. It returns once the agent has started.
func serveInternal(tb testing.TB, id string) *Agent {
	tb.Helper()
	cfg := Defaults()
	cfg.HTTPAddr, cfg.EmbeddedBrokerAddr, cfg.DataDir, cfg.AgentID = "127.0.0.1:0", "127.0.0.1:0", tb.TempDir(), id
	a, err := New(cfg, nil)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx) }() // owner: tb's cleanup; ends with cancel
	tb.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			tb.Errorf("agent stopped with: %v", err)
		}
	})
	<-a.Started()
	return a
}
