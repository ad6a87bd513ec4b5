package agent_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/internal/baseline"
)

// BenchmarkWebhookHandler measures the server side of one webhook without
// the network (which make bench's wrk run includes): the agent's handler,
// run history on, against a bare echo handler doing the same work in Go.
// Compare the ns/op of one run; "pooled goja" runs the script with none
// of opsrunner's guarantees, the ceiling of a JS run per request. Both run with the garbage collector
// set as `opsrunner serve` sets it.
func BenchmarkWebhookHandler(b *testing.B) {
	agent.TuneGC(0)
	b.Run("bare echo", func(b *testing.B) { benchHandler(b, baseline.EchoHandler(), baseline.EchoPath) })
	b.Run("pooled goja", func(b *testing.B) { benchHandler(b, baseline.GojaHandler(), baseline.EchoPath) })

	a := startAgent(b, nil)
	a.mustDeploy(b, "bench", bundle(b, map[string]string{
		"opsrunner.yaml": baseline.WebhookManifest,
		"hook.js":        baseline.WebhookScript,
	}))
	b.Run("opsrunner", func(b *testing.B) { benchHandler(b, a.Handler(), "/hooks/bench/hook") })
}

func benchHandler(b *testing.B, h http.Handler, path string) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(baseline.WebhookBody))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(`"id":42`)) {
				b.Fatalf("answer %d %s", rec.Code, rec.Body)
			}
		}
	})
}
