package agent_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v5"
)

// benchBody and benchScript are webhookbench's request and script.
const (
	benchBody   = `{"id": 42, "name": "widget", "tags": ["a", "b"], "price": 9.5}`
	benchScript = "function handle(event) {\n  const v = JSON.parse(event.rawBody);\n  return {ok: true, id: v.id, n: Object.keys(v).length};\n}\n"
)

// BenchmarkWebhookHandler measures the server side of one webhook without
// the network (which make bench's wrk run includes): the agent's handler,
// run history on, against a bare echo handler doing the same work in Go.
// Compare the two ns/op of one run.
func BenchmarkWebhookHandler(b *testing.B) {
	e := echo.New()
	e.POST("/hook", func(c *echo.Context) error {
		var v map[string]any
		if err := json.NewDecoder(c.Request().Body).Decode(&v); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]any{"ok": true, "id": v["id"], "n": len(v)})
	})
	b.Run("bare echo", func(b *testing.B) { benchHandler(b, e, "/hook") })

	a := startAgent(b, nil)
	a.mustDeploy(b, "bench", bundle(b, map[string]string{
		"opsrunner.yaml": "project: bench\noperations:\n  - name: hook\n    script: hook.js\n    webhook: {path: hook}\n",
		"hook.js":        benchScript,
	}))
	b.Run("opsrunner", func(b *testing.B) { benchHandler(b, a.Handler(), "/hooks/bench/hook") })
}

func benchHandler(b *testing.B, h http.Handler, path string) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(benchBody))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(`"id":42`)) {
				b.Fatalf("answer %d %s", rec.Code, rec.Body)
			}
		}
	})
}
