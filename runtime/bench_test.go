package runtime

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/internal/baseline"
	"github.com/opsrunner/opsrunner/scripts"
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

// webhookEvent is shaped like triggers.WebhookEvent's answer for the
// webhookbench request; rawBody says whether body is given as
// json.RawMessage instead of decoded data.
func webhookEvent(rawBody bool) map[string]any {
	raw := `{"id": 42, "name": "widget", "tags": ["a", "b"], "price": 9.5}`
	var body any = map[string]any{"id": 42.0, "name": "widget", "tags": []any{"a", "b"}, "price": 9.5}
	if rawBody {
		body = json.RawMessage(raw)
	}
	return map[string]any{
		"method":  "POST",
		"path":    "hook",
		"headers": map[string]any{"host": "127.0.0.1:8080", "content-length": "62", "content-type": "application/json"},
		"query":   map[string]any{},
		"body":    body,
		"rawBody": raw,
	}
}

// BenchmarkInvokeWebhook is BenchmarkInvoke with webhookbench's script and
// a full webhook event.
func BenchmarkInvokeWebhook(b *testing.B) {
	e := newEngine(b, Config{})
	p := newProject(b, "bench", op{name: "hook", src: "function handle(event) {\n  const v = JSON.parse(event.rawBody);\n  return {ok: true, id: v.id, n: Object.keys(v).length};\n}\n"})
	for _, raw := range []bool{false, true} {
		name := "decoded body"
		if raw {
			name = "raw JSON body"
		}
		b.Run(name, func(b *testing.B) {
			inv := Invocation{RunID: "r", Project: p, Operation: "hook", Trigger: TriggerWebhook, Event: webhookEvent(raw)}
			b.ReportAllocs()
			for b.Loop() {
				if res := e.Run(context.Background(), inv); res.Err != nil {
					b.Fatal(res.Err)
				}
			}
		})
	}
}

// BenchmarkNewVM measures building one hardened runtime (a pool miss).
func BenchmarkNewVM(b *testing.B) {
	e := newEngine(b, Config{})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := newVM(e); err != nil {
			b.Fatal(err)
		}
	}
}

// resultSources are script results of a few sizes for BenchmarkResultJSON.
var resultSources = []struct{ name, src string }{
	{"small", `({ok: true, id: 42, n: 4})`},
	{"medium", `({order: {id: "A-1001", customer: {name: "Ada <Lovelace>", email: "ada@example.com"}, ` +
		`lines: [1, 2, 3, 4, 5].map(i => ({sku: "SKU-" + i, qty: i, price: i * 9.99, tags: ["x", "y"]})), ` +
		`total: 149.85, paid: false, notes: null}, received: "2026-11-25T13:04:05Z", attempt: 1})`},
}

// BenchmarkResultJSON measures turning a script's result into the JSON a
// webhook answers with (the part of BenchmarkInvokeWebhook after the
// script ran).
func BenchmarkResultJSON(b *testing.B) {
	e := newEngine(b, Config{})
	v, err := newVM(e)
	if err != nil {
		b.Fatal(err)
	}
	for _, rs := range resultSources {
		val, err := v.rt.RunString(rs.src)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(rs.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.encodeJSON(val); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// listenerEvent is shaped like the listener's event for one delivery: the
// body as raw JSON, properties and headers computed on first read.
func listenerEvent() map[string]any {
	return map[string]any{
		"messageId":     "ID:broker-1:1:1:1",
		"destination":   "/queue/orders",
		"body":          json.RawMessage(`{"id": 42, "name": "widget"}`),
		"properties":    func() any { return map[string]any{"type": "order", "priority": 4.0} },
		"headers":       func() any { return map[string]any{"content-type": "application/json"} },
		"redelivered":   false,
		"deliveryCount": 1.0,
	}
}

// BenchmarkListenerRun measures one run of a trivial listener operation on
// a warm pool: what a delivery costs beyond the broker. With an ack
// deadline, each run's context can end (one per delivery, as the listener
// makes them).
func BenchmarkListenerRun(b *testing.B) {
	e := newEngine(b, Config{})
	p := newProject(b, "p", op{name: "main", src: `function handle(event) { return {ok: event.body.id}; }`})
	inv := Invocation{RunID: "r", Project: p, Operation: "main", Trigger: TriggerListener,
		Event: listenerEvent(), Message: &fakeMessage{id: "ID:broker-1:1:1:1"}}
	if res := e.Run(context.Background(), inv); res.Err != nil || string(res.JSON) != `{"ok":42}` {
		b.Fatalf("got %s, %v", res.JSON, res.Err)
	}
	b.Run("no deadline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if res := e.Run(context.Background(), inv); res.Err != nil {
				b.Fatal(res.Err)
			}
		}
	})
	b.Run("ack deadline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			res := e.Run(ctx, inv)
			cancel()
			if res.Err != nil {
				b.Fatal(res.Err)
			}
		}
	})
}

// cannedFetcher answers every fetch at once with the same response: the
// runtime's side of an awaited fetch, without a network.
type cannedFetcher struct{ resp FetchResponse }

func (f cannedFetcher) Fetch(context.Context, *scripts.Project, FetchRequest) (*FetchResponse, error) {
	r := f.resp
	return &r, nil
}

// BenchmarkFetchRun measures iobench's webhook script on the runtime
// alone: it awaits a fetch (answered at once, ~1 KiB of JSON, as iobench's
// upstream answers), awaits its json() and returns part of it. The event
// loop, the Response and the Promise jobs are what it measures.
func BenchmarkFetchRun(b *testing.B) {
	body := `{"order":{"id":7,"price":42.5,"currency":"EUR"},"padding":"` + strings.Repeat("x", 960) + `"}`
	f := cannedFetcher{FetchResponse{Status: 200, StatusText: "OK", URL: "http://upstream.test/order",
		Header: http.Header{"Content-Type": {"application/json"}, "Date": {"Sun, 06 Dec 2026 09:00:00 GMT"}}, Body: []byte(body)}}
	e := newEngine(b, Config{Fetcher: f})
	p := newProject(b, "iobench", op{name: "hook", src: `async function handle(event) {
  const r = await fetch("http://upstream.test/order");
  const d = await r.json();
  return {price: d.order.price};
}`})
	inv := Invocation{RunID: "r", Project: p, Operation: "hook", Trigger: TriggerWebhook, Event: webhookEvent(true)}
	if res := e.Run(context.Background(), inv); res.Err != nil || string(res.JSON) != `{"price":42.5}` {
		b.Fatalf("result %s, err %v", res.JSON, res.Err)
	}
	b.ReportAllocs()
	report := baseline.CPUMeter(b)
	for b.Loop() {
		if res := e.Run(context.Background(), inv); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
	report()
}
