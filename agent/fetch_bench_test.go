package agent_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/internal/baseline"
)

// BenchmarkFetchWebhook measures iobench's webhook on the agent's own
// handler, run history on: the script awaits a fetch to a local upstream
// that answers at once with ~1 KiB of JSON (as iobench's does, without its
// 20 ms), awaits its json() and returns part of it. The egress client, the
// event loop, the Response and the run's record are what it measures;
// compare its CPU per op and allocs/op between builds.
func BenchmarkFetchWebhook(b *testing.B) {
	agent.TuneGC(0)
	body := []byte(`{"order":{"id":7,"price":42.5,"currency":"EUR"},"padding":"` + strings.Repeat("x", 960) + `"}`)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	b.Cleanup(up.Close)
	a := startAgent(b, nil)
	a.mustDeploy(b, "iobench", bundle(b, map[string]string{
		"opsrunner.yaml": fmt.Sprintf("project: iobench\negress: [\"127.0.0.1\"]\nenv: {UPSTREAM: %q}\n"+
			"operations:\n  - name: hook\n    script: hook.js\n    webhook: {path: hook}\n", up.URL),
		"hook.js": `async function handle(event) {
  const r = await fetch(env.UPSTREAM + "/order");
  const d = await r.json();
  return {price: d.order.price};
}
`,
	}))
	h := a.Handler()
	b.ReportAllocs()
	b.SetParallelism(8) // runs awaiting the upstream overlap, as under load
	report := baseline.CPUMeter(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/hooks/iobench/hook", strings.NewReader(`{}`))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(`{"price":42.5}`)) {
				b.Fatalf("answer %d %s", rec.Code, rec.Body)
			}
		}
	})
	report()
}
