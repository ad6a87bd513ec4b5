package runtime

import (
	"context"
	"testing"
)

const benchSrc = `function handle(e) { const b = JSON.parse(e.body); return {id: b.id, total: b.qty * b.price, ok: true} }`

func benchSetup(b *testing.B) (*Engine, Invocation) {
	e := newEngine(b, Config{})
	p := newProject(b, "p", op{name: "main", src: benchSrc})
	inv := Invocation{RunID: "r", Project: p, Operation: "main", Trigger: TriggerWebhook,
		Event: map[string]any{"method": "POST", "path": "/hooks/p/main", "body": `{"id":"a1","qty":3,"price":2.5}`}}
	if res := e.Run(context.Background(), inv); res.Err != nil {
		b.Fatal(res.Err)
	}
	return e, inv
}

// BenchmarkInvoke measures one webhook-style invocation on a warm pool.
func BenchmarkInvoke(b *testing.B) {
	e, inv := benchSetup(b)
	b.ReportAllocs()
	for b.Loop() {
		if res := e.Run(context.Background(), inv); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}

func BenchmarkInvokeParallel(b *testing.B) {
	e, inv := benchSetup(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if res := e.Run(context.Background(), inv); res.Err != nil {
				b.Error(res.Err)
				return
			}
		}
	})
}
