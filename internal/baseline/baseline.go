// Package baseline holds the webhook benchmark's workload and the bare Go
// handler opsrunner's webhooks are measured against, shared by
// bench/webhookbench (over the network, with wrk) and the agent's
// BenchmarkWebhookHandler (in process), so both compare the same work.
package baseline

import (
	"encoding/json"
	"io"
	"net/http"
	"sync"

	"github.com/dop251/goja"
	"github.com/labstack/echo/v5"
)

const (
	// WebhookBody is the request body: a small JSON object.
	WebhookBody = `{"id": 42, "name": "widget", "tags": ["a", "b"], "price": 9.5}`
	// WebhookScript parses the body and returns a small object.
	WebhookScript = "function handle(event) {\n  const v = JSON.parse(event.rawBody);\n  return {ok: true, id: v.id, n: Object.keys(v).length};\n}\n"
	// WebhookManifest deploys WebhookScript as project bench, webhook path
	// hook, from the file hook.js.
	WebhookManifest = "project: bench\noperations:\n  - name: hook\n    script: hook.js\n    webhook: {path: hook}\n"
	// EchoPath is where EchoHandler serves.
	EchoPath = "/hook"
)

// EchoHandler does WebhookScript's work in Go with echo v5 at EchoPath.
func EchoHandler() http.Handler {
	e := echo.New()
	e.POST(EchoPath, func(c *echo.Context) error {
		var v map[string]any
		if err := json.NewDecoder(c.Request().Body).Decode(&v); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]any{"ok": true, "id": v["id"], "n": len(v)})
	})
	return e
}

// GojaHandler runs WebhookScript at EchoPath the cheapest way goja allows,
// without anything opsrunner guarantees (no run record, time limit, chain,
// isolation between requests or error shape): a pool of runtimes holding
// the compiled handler, an event of the raw body only, the result exported
// and marshalled. It is the ceiling of a JS-per-request design on the
// machine at hand, which the benchmarks print beside the agent.
func GojaHandler() http.Handler {
	prog := goja.MustCompile("hook.js", WebhookScript, true)
	pool := sync.Pool{New: func() any {
		rt := goja.New()
		if _, err := rt.RunProgram(prog); err != nil {
			panic(err)
		}
		fn, ok := goja.AssertFunction(rt.Get("handle"))
		if !ok {
			panic("hook.js defines no handle function")
		}
		return &pooled{rt: rt, handle: fn}
	}}
	e := echo.New()
	e.POST(EchoPath, func(c *echo.Context) error {
		body, err := io.ReadAll(c.Request().Body)
		if err != nil {
			return err
		}
		p := pool.Get().(*pooled)
		defer pool.Put(p)
		event := p.rt.NewObject()
		if err := event.Set("rawBody", string(body)); err != nil {
			return err
		}
		v, err := p.handle(goja.Undefined(), event)
		if err != nil {
			return err
		}
		out, err := json.Marshal(v.Export())
		if err != nil {
			return err
		}
		return c.JSONBlob(http.StatusOK, out)
	})
	return e
}

type pooled struct {
	rt     *goja.Runtime
	handle goja.Callable
}
