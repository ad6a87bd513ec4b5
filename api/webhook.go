package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v5"
	"github.com/opsrunner/opsrunner/store"
	"github.com/opsrunner/opsrunner/triggers"
)

// webhook serves POST /hooks/{project}/{path}.
func (s *server) webhook(c *echo.Context) error {
	r := c.Request()
	project, path := param(c, "project"), param(c, "path")
	p, op, err := s.b.Webhook(project, path)
	if err != nil {
		return newError(http.StatusNotFound, CodeNotFound, fmt.Sprintf("no webhook %s/%s", project, path), nil)
	}
	if r.Header.Get(proxiedHeader) == "" {
		if target := s.b.ProxyTarget(); target != "" {
			s.proxy.serve(c, target)
			return nil
		}
	}
	if op.Webhook != nil && op.Webhook.TokenSecret != "" {
		if err := s.webhookToken(c, p.Name, op.Webhook.TokenSecret); err != nil {
			return err
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return newError(http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("body larger than %d bytes", mbe.Limit), map[string]any{"limit": mbe.Limit})
		}
		return newError(http.StatusBadRequest, CodeBadRequest, "read body: "+err.Error(), nil)
	}
	if op.Webhook != nil && op.Webhook.SecretEnv != "" {
		secret, err := s.webhookSecret(r.Context(), p.Name, op.Webhook.SecretEnv)
		if err != nil {
			return err
		}
		if err := triggers.VerifySignature([]byte(secret), body, r.Header.Get(triggers.SignatureHeader)); err != nil {
			return newError(http.StatusUnauthorized, CodeUnauthorized, err.Error(), nil)
		}
	}
	event, err := triggers.WebhookEvent(r, path, body)
	if err != nil {
		return bodyError(err)
	}
	inv := Invocation{
		Project:        p,
		Operation:      op,
		Event:          event,
		Async:          preferAsync(r.Header.Values("Prefer")),
		IdempotencyKey: r.Header.Get("Idempotency-Key"),
	}
	if inv.IdempotencyKey != "" {
		inv.BodyDigest = bodyDigest(body)
	}
	run, resp, err := s.b.Invoke(r.Context(), inv)
	if err != nil {
		return err
	}
	c.Response().Header().Set("X-Opsrunner-Run", run.ID)
	if inv.Async {
		c.Response().Header().Set("Location", "/api/v1/runs/"+run.ID)
		return c.JSON(http.StatusAccepted, map[string]string{"runId": run.ID, "status": run.Status, "location": "/api/v1/runs/" + run.ID})
	}
	if resp != nil {
		h := c.Response().Header()
		for k, v := range resp.Headers {
			h.Set(k, v)
		}
		c.Response().WriteHeader(resp.Status)
		_, err := c.Response().Write(resp.Body)
		return err
	}
	return runError(run)
}

// webhookSecret returns the HMAC secret a webhook's secretEnv names: the
// project's secret of that name when it is set, else the agent's
// environment variable; 503 when neither is set. A secret that cannot be
// read (another agent's key) is a 500 the agent logs: the caller is told
// nothing about it.
func (s *server) webhookSecret(ctx context.Context, project, name string) (string, error) {
	secret, ok, err := s.b.Secret(ctx, project, name)
	if err != nil {
		return "", fmt.Errorf("webhook secret: %w", err)
	}
	if ok {
		return secret, nil
	}
	if secret := s.opts.Getenv(name); secret != "" {
		return secret, nil
	}
	return "", newError(http.StatusServiceUnavailable, CodeUnavailable,
		fmt.Sprintf("webhook secret %s is not set: neither a secret of project %s nor an environment variable of this agent", name, project), nil)
}

// bodyError answers a request body the event cannot be built from: 400,
// saying where JSON broke.
func bodyError(err error) error {
	var je *triggers.JSONBodyError
	if errors.As(err, &je) {
		return newError(http.StatusBadRequest, CodeInvalidJSON, je.Error(),
			map[string]any{"line": je.Line, "column": je.Column, "offset": je.Offset})
	}
	return newError(http.StatusBadRequest, CodeBadRequest, err.Error(), nil)
}

// bodyDigest is the hex SHA-256 of a request body: what tells a repeated
// Idempotency-Key's body from another.
func bodyDigest(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// runError answers a failed run: 504 on timeout, 500 otherwise, with the
// script's error and the run id (never Go internals).
func runError(run store.Run) error {
	details := map[string]any{"runId": run.ID, "operation": run.Operation}
	if run.Status == store.StatusTimedOut {
		return newError(http.StatusGatewayTimeout, CodeTimeout, run.Error, details)
	}
	return newError(http.StatusInternalServerError, CodeScriptError, run.Error, details)
}

func preferAsync(values []string) bool {
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), "respond-async") {
				return true
			}
		}
	}
	return false
}

// proxiedHeader marks a webhook forwarded by another agent: it is served
// where it lands (one hop at most).
const proxiedHeader = "X-Opsrunner-Proxied-By"
