// Package baseline holds the webhook benchmark's workload and the bare Go
// handler opsrunner's webhooks are measured against, shared by
// bench/webhookbench (over the network, with wrk) and the agent's
// BenchmarkWebhookHandler (in process), so both compare the same work.
package baseline

import (
	"encoding/json"
	"net/http"

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
