// Package baseline holds what opsrunner's benchmarks measure against, so
// that each compares the same work: the webhook workload and the bare Go
// handler doing it (bench/webhookbench over the network with wrk, the
// agent's BenchmarkWebhookHandler in process), the same script run bare in
// goja (GojaScript, also in bench/listenerbench), and the process's CPU
// time (CPUTime; CPUMeter reports it per op in a Go benchmark).
package baseline

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

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

// GojaScript is a script's handle function in a goja runtime of its own,
// run the cheapest way goja allows, without anything opsrunner guarantees
// (no run record, time limit, chain, isolation between runs or error
// shape): the benchmarks' ceiling of a JS run per request or message on the
// machine at hand, printed beside the agent. Not safe for concurrent use.
type GojaScript struct {
	rt            *goja.Runtime
	handle, parse goja.Callable
}

// NewGojaScript runs src (which defines handle) in a new runtime.
func NewGojaScript(name, src string) (*GojaScript, error) {
	rt := goja.New()
	if _, err := rt.RunScript(name, src); err != nil {
		return nil, err
	}
	handle, ok := goja.AssertFunction(rt.Get("handle"))
	if !ok {
		return nil, fmt.Errorf("%s defines no handle function", name)
	}
	parse, _ := goja.AssertFunction(rt.Get("JSON").ToObject(rt).Get("parse"))
	return &GojaScript{rt: rt, handle: handle, parse: parse}, nil
}

// Run calls handle with an event holding one field, key, set to text (to
// JSON.parse(text) when parseJSON), and returns the result exported and
// marshalled.
func (g *GojaScript) Run(key, text string, parseJSON bool) ([]byte, error) {
	val := g.rt.ToValue(text)
	if parseJSON {
		var err error
		if val, err = g.parse(goja.Undefined(), val); err != nil {
			return nil, fmt.Errorf("parse: %w", err)
		}
	}
	event := g.rt.NewObject()
	if err := event.Set(key, val); err != nil {
		return nil, err
	}
	out, err := g.handle(goja.Undefined(), event)
	if err != nil {
		return nil, fmt.Errorf("handle: %w", err)
	}
	return json.Marshal(out.Export())
}

// GojaHandler serves WebhookScript at EchoPath as a GojaScript from a pool,
// the event holding the raw body only.
func GojaHandler() http.Handler {
	pool := sync.Pool{New: func() any {
		g, err := NewGojaScript("hook.js", WebhookScript)
		if err != nil {
			panic(err)
		}
		return g
	}}
	e := echo.New()
	e.POST(EchoPath, func(c *echo.Context) error {
		body, err := io.ReadAll(c.Request().Body)
		if err != nil {
			return err
		}
		g := pool.Get().(*GojaScript)
		defer pool.Put(g)
		out, err := g.Run("rawBody", string(body), false)
		if err != nil {
			return err
		}
		return c.JSONBlob(http.StatusOK, out)
	})
	return e
}

// CPUTime is the CPU time (user + system) this process has used so far;
// the benchmarks charge its growth over a leg to that leg.
func CPUTime() time.Duration {
	d, _ := cpuTime()
	return d
}

// CPUMeter starts measuring the process's CPU time (user and system, all
// its threads: the garbage collector's too); the function it returns
// reports it per iteration of b as cpu-ns/op. On a shared machine it
// varies less than ns/op.
func CPUMeter(b *testing.B) (report func()) {
	start := processCPU(b)
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(processCPU(b)-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

func processCPU(b *testing.B) time.Duration {
	d, err := cpuTime()
	if err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return d
}

func cpuTime() (time.Duration, error) {
	var ru syscall.Rusage
	err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), err
}
