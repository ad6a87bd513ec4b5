package agent

import (
	"context"
	"testing"

	"github.com/opsrunner/opsrunner/triggers"
)

// benchAcker settles deliveries without a broker.
type benchAcker struct{}

func (benchAcker) Settle(ctx context.Context, _ []triggers.Outgoing, fence triggers.Fence) error {
	if fence == nil {
		return nil
	}
	return fence.Check(ctx)
}
func (benchAcker) Send(string, []byte, map[string]string) error { return nil }

// BenchmarkListenerDelivery measures what the agent does for one delivery
// of listenerbench's trivial listener, without a broker: the run (event,
// script, result), its record before and after, and the settlement (run
// history, metrics). ns/op is the agent's share of a listener message;
// triggers' BenchmarkHandle is the lifecycle's around it.
func BenchmarkListenerDelivery(b *testing.B) {
	TuneGC(0)
	a := serveInternal(b, "bench")
	// The agent's CPU, not the disk's: with run_durability sync every
	// commit would wait for an fsync of its run records.
	a.cfg.RunDurability = RunDurabilityBatched
	ctx := context.Background()
	pv, err := a.Deploy(ctx, "bench", map[string][]byte{
		"opsrunner.yaml": []byte("project: bench\noperations:\n  - name: handle\n    script: handle.js\n    timeout: 10s\nlisteners:\n  - name: in\n    destination: /queue/in\n    operations: [handle]\n"),
		"handle.js":      []byte("function handle(event) { return {ok: event.body.id}; }\n"),
	})
	if err != nil {
		b.Fatal(err)
	}
	p, _ := a.Project("bench")
	l, _ := p.Listener("in")
	spec := triggers.ListenerSpec{ID: "bench/in", Project: "bench", Version: pv.Version, Listener: *l}
	hdr := triggers.Headers{"destination", "/queue/in", "message-id", "ID:bench-1:1:1:1", "subscription", "1", "ack", "ID:bench-1:1:1:1",
		"content-type", "application/json", "persistent", "true", "priority", "4", "timestamp", "1764680000000", "expires", "0", "content-length", "24"}
	msg := triggers.Message{ID: "ID:bench-1:1:1:1", Destination: "/queue/in", Headers: hdr, Body: []byte(`{"id":1,"name":"widget"}`), Attempt: 1}
	h := a.listenerHandler(spec)
	b.ReportAllocs()
	for b.Loop() {
		d := triggers.NewDelivery(triggers.DeliveryConfig{Message: msg, Key: msg.ID, Operations: l.Operations, Acker: benchAcker{}})
		if err := h(ctx, d); err != nil {
			b.Fatal(err)
		}
		if !d.Settled() {
			b.Fatal("delivery not settled")
		}
	}
}
