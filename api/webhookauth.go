package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v5"
)

// webhookToken checks that a webhook request carries
// "Authorization: Bearer <token>" equal to the project secret named
// secretName. It answers 401 (with WWW-Authenticate: Bearer) when the token
// is missing or wrong, and 503 when the secret is not set: the webhook is
// closed until it is. The comparison takes the same time whatever the
// token: both sides are hashed to a fixed length first.
func (s *server) webhookToken(c *echo.Context, project, secretName string) error {
	ctx := c.Request().Context()
	secret, err := s.tokenSecret(ctx, project, secretName)
	if err != nil {
		return err
	}
	token, ok := strings.CutPrefix(c.Request().Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		c.Response().Header().Set("WWW-Authenticate", "Bearer")
		return newError(http.StatusUnauthorized, CodeUnauthorized, "this webhook requires a bearer token: Authorization: Bearer <token>", nil)
	}
	got, want := sha256.Sum256([]byte(token)), sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		c.Response().Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		return newError(http.StatusUnauthorized, CodeUnauthorized, "the bearer token is not this webhook's", nil)
	}
	return nil
}

// tokenSecret reads the project secret a webhook's tokenSecret names; 503
// when it is not set. A secret that cannot be read is a 500 the agent
// logs: the caller is told nothing about it.
func (s *server) tokenSecret(ctx context.Context, project, name string) (string, error) {
	secret, ok, err := s.b.Secret(ctx, project, name)
	if err != nil {
		return "", fmt.Errorf("webhook token secret: %w", err)
	}
	if !ok || secret == "" {
		return "", newError(http.StatusServiceUnavailable, CodeUnavailable,
			fmt.Sprintf("webhook token secret %s is not set: set the secret %s of project %s", name, name, project), nil)
	}
	return secret, nil
}
