package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/api"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/secrets"
	"github.com/opsrunner/opsrunner/store"
	"github.com/opsrunner/opsrunner/triggers"
)

// secretsBackend keeps secrets in a real vault over a bbolt store, as the
// agent does, and counts the calls that reach it. It serves one webhook,
// /hooks/p/signed, whose secretEnv is HOOK_SECRET. Other Backend methods
// are not called by these tests (the nil interface panics if they are).
type secretsBackend struct {
	api.Backend
	vault *secrets.Vault
	calls atomic.Int64
}

func newSecretsBackend(t *testing.T) *secretsBackend {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "opsrunner.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key := make([]byte, secrets.KeySize)
	rand.Read(key)
	v, err := secrets.NewVault(key, st)
	if err != nil {
		t.Fatal(err)
	}
	return &secretsBackend{vault: v}
}

func (b *secretsBackend) PutSecret(ctx context.Context, project, name string, value []byte) error {
	b.calls.Add(1)
	return b.vault.Set(ctx, project, name, value)
}

func (b *secretsBackend) Secrets(ctx context.Context, project string) ([]store.SecretInfo, error) {
	b.calls.Add(1)
	return b.vault.List(ctx, project)
}

func (b *secretsBackend) DeleteSecret(ctx context.Context, project, name string) error {
	b.calls.Add(1)
	return b.vault.Delete(ctx, project, name)
}

func (b *secretsBackend) Secret(ctx context.Context, project, name string) (string, bool, error) {
	return b.vault.Get(ctx, project, name)
}

func (b *secretsBackend) Webhook(project, path string) (*scripts.Project, *scripts.Operation, error) {
	if project != "p" || path != "signed" {
		return nil, nil, store.ErrNotFound
	}
	return &scripts.Project{Name: "p"}, &scripts.Operation{Name: "signed", Webhook: &scripts.Webhook{Path: "signed", SecretEnv: "HOOK_SECRET"}}, nil
}

func (b *secretsBackend) ProxyTarget() string { return "" }

func (b *secretsBackend) Invoke(context.Context, api.Invocation) (store.Run, *triggers.Response, error) {
	return store.Run{ID: "r1", Status: store.StatusSucceeded}, &triggers.Response{Status: http.StatusNoContent}, nil
}

func call(h http.Handler, method, path string, body []byte, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// errorAnswer is the API's JSON error shape.
type errorAnswer struct {
	Error struct {
		Code    string         `json:"code"`
		Message string         `json:"message"`
		Details map[string]any `json:"details"`
	} `json:"error"`
}

func decodeError(t *testing.T, rec *httptest.ResponseRecorder) errorAnswer {
	t.Helper()
	var e errorAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("not a JSON error answer (%v): %d %s", err, rec.Code, rec.Body)
	}
	return e
}

// PUT sets (204), GET lists names and update times but never values (200),
// DELETE deletes (204) and is 404 when the secret is not set. A project
// need not be deployed; one without secrets lists [].
func TestSecretsEndpoints(t *testing.T) {
	t.Parallel()
	b := newSecretsBackend(t)
	h := api.New(b, api.Options{})
	const path = "/api/v1/projects/shop/secrets"

	if rec := call(h, http.MethodGet, path, nil, nil); rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != `{"secrets":[]}` {
		t.Fatalf("GET without secrets: %d %s; want 200 {\"secrets\":[]}", rec.Code, rec.Body)
	}
	before := time.Now()
	for name, value := range map[string]string{"API_KEY": "value-of-api-key", "TOKEN": "value-of-token\n"} {
		rec := call(h, http.MethodPut, path+"/"+name, []byte(value), map[string]string{"Content-Type": "text/plain"})
		if rec.Code != http.StatusNoContent || rec.Body.Len() != 0 {
			t.Fatalf("PUT %s: %d %s; want 204 and no body", name, rec.Code, rec.Body)
		}
	}
	if got, ok, err := b.vault.Get(t.Context(), "shop", "TOKEN"); err != nil || !ok || got != "value-of-token\n" {
		t.Fatalf("stored TOKEN = %q, %v, %v; want the body as is", got, ok, err)
	}

	rec := call(h, http.MethodGet, path, nil, nil)
	if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), "value-of") {
		t.Fatalf("GET: %d %s; want 200 without values", rec.Code, rec.Body)
	}
	var list struct {
		Secrets []map[string]any `json:"secrets"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || len(list.Secrets) != 2 {
		t.Fatalf("GET: %s (%v)", rec.Body, err)
	}
	for i, name := range []string{"API_KEY", "TOKEN"} {
		s := list.Secrets[i]
		at, err := time.Parse(time.RFC3339Nano, s["updatedAt"].(string))
		if s["name"] != name || len(s) != 2 || err != nil || at.Before(before.Add(-time.Second)) {
			t.Errorf("secret %d = %v; want {name: %s, updatedAt: now}", i, s, name)
		}
	}

	if rec := call(h, http.MethodDelete, path+"/API_KEY", nil, nil); rec.Code != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", rec.Code, rec.Body)
	}
	rec = call(h, http.MethodDelete, path+"/API_KEY", nil, nil)
	if e := decodeError(t, rec); rec.Code != http.StatusNotFound || e.Error.Code != "not_found" || !strings.Contains(e.Error.Message, `no secret "API_KEY" in project "shop"`) {
		t.Fatalf("DELETE of an unset secret: %d %s", rec.Code, rec.Body)
	}
	if rec := call(h, http.MethodPost, path+"/TOKEN", nil, nil); rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d %s; want 405", rec.Code, rec.Body)
	}
}

// A bad project name, secret name or value is a 400 saying which rule, and
// reaches no backend.
func TestSecretsEndpointsRefuseBadInput(t *testing.T) {
	t.Parallel()
	b := newSecretsBackend(t)
	h := api.New(b, api.Options{})
	for _, tc := range []struct {
		method, path string
		body         []byte
		code, field  string
		message      string
	}{
		{http.MethodPut, "/api/v1/projects/Shop/secrets/KEY", []byte("v"), "invalid_project_name", "", `project name "Shop" holds 'S'`},
		{http.MethodGet, "/api/v1/projects/.shop/secrets", nil, "invalid_project_name", "", `starts with "."`},
		{http.MethodDelete, "/api/v1/projects/" + strings.Repeat("a", 64) + "/secrets/KEY", nil, "invalid_project_name", "", "is 64 characters long"},
		{http.MethodPut, "/api/v1/projects/shop/secrets/9KEY", []byte("v"), "invalid_secret", "name", "starts with a digit"},
		{http.MethodPut, "/api/v1/projects/shop/secrets/API-KEY", []byte("v"), "invalid_secret", "name", `holds '-' at byte 3`},
		{http.MethodDelete, "/api/v1/projects/shop/secrets/" + strings.Repeat("K", 129), nil, "invalid_secret", "name", "is 129 characters long"},
		{http.MethodPut, "/api/v1/projects/shop/secrets/KEY", nil, "invalid_secret", "value", "secret value is empty"},
		{http.MethodPut, "/api/v1/projects/shop/secrets/KEY", bytes.Repeat([]byte("v"), 64<<10+1), "invalid_secret", "value", "longer than 64 KiB"},
	} {
		rec := call(h, tc.method, tc.path, tc.body, nil)
		e := decodeError(t, rec)
		field, _ := e.Error.Details["field"].(string)
		if rec.Code != http.StatusBadRequest || e.Error.Code != tc.code || field != tc.field || !strings.Contains(e.Error.Message, tc.message) {
			t.Errorf("%s %.60s: %d %s; want 400 %s (field %q) saying %q", tc.method, tc.path, rec.Code, rec.Body, tc.code, tc.field, tc.message)
		}
	}
	if n := b.calls.Load(); n != 0 {
		t.Fatalf("%d refused requests reached the backend", n)
	}
	if rec := call(h, http.MethodPut, "/api/v1/projects/shop/secrets/MAX", bytes.Repeat([]byte("v"), 64<<10), nil); rec.Code != http.StatusNoContent {
		t.Fatalf("a 64 KiB value: %d %s; want 204", rec.Code, rec.Body)
	}
}

// The secrets endpoints are behind /api/v1's bearer token.
func TestSecretsEndpointsNeedTheToken(t *testing.T) {
	t.Parallel()
	b := newSecretsBackend(t)
	h := api.New(b, api.Options{Tokens: []api.Token{api.NewToken("t0ken", api.ScopeAdmin)}})
	for _, r := range []struct{ method, path string }{
		{http.MethodPut, "/api/v1/projects/shop/secrets/KEY"},
		{http.MethodGet, "/api/v1/projects/shop/secrets"},
		{http.MethodDelete, "/api/v1/projects/shop/secrets/KEY"},
	} {
		for _, auth := range []string{"", "Bearer wrong"} {
			rec := call(h, r.method, r.path, []byte("v"), map[string]string{"Authorization": auth})
			if rec.Code != http.StatusUnauthorized {
				t.Errorf("%s %s with %q: %d; want 401", r.method, r.path, auth, rec.Code)
			}
		}
	}
	if n := b.calls.Load(); n != 0 {
		t.Fatalf("%d unauthorized requests reached the backend", n)
	}
	ok := map[string]string{"Authorization": "Bearer t0ken"}
	if rec := call(h, http.MethodPut, "/api/v1/projects/shop/secrets/KEY", []byte("v"), ok); rec.Code != http.StatusNoContent {
		t.Fatalf("PUT with the token: %d %s", rec.Code, rec.Body)
	}
}

// A webhook's secretEnv names a project secret or, when the project has
// none of that name, an agent environment variable; with neither, the
// webhook is 503 naming both places.
func TestWebhookSecretEnvTakesAProjectSecretFirst(t *testing.T) {
	t.Parallel()
	b := newSecretsBackend(t)
	env := map[string]string{}
	h := api.New(b, api.Options{Getenv: func(k string) string { return env[k] }})
	body := []byte(`{"n":1}`)
	signed := func(secret string) map[string]string {
		return map[string]string{triggers.SignatureHeader: triggers.Sign([]byte(secret), body), "Content-Type": "application/json"}
	}
	hook := func(secret string) int { return call(h, http.MethodPost, "/hooks/p/signed", body, signed(secret)).Code }

	rec := call(h, http.MethodPost, "/hooks/p/signed", body, signed("any"))
	e := decodeError(t, rec)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(e.Error.Message, "HOOK_SECRET is not set: neither a secret of project p nor an environment variable of this agent") {
		t.Fatalf("neither set: %d %s", rec.Code, rec.Body)
	}

	env["HOOK_SECRET"] = "from-env"
	if got := hook("from-env"); got != http.StatusNoContent {
		t.Fatalf("signed with the environment variable: %d", got)
	}

	if err := b.vault.Set(t.Context(), "p", "HOOK_SECRET", []byte("from-project")); err != nil {
		t.Fatal(err)
	}
	if got := hook("from-project"); got != http.StatusNoContent {
		t.Fatalf("signed with the project secret: %d", got)
	}
	if got := hook("from-env"); got != http.StatusUnauthorized {
		t.Fatalf("signed with the environment variable while the project secret is set: %d, want 401", got)
	}

	if err := b.vault.Delete(t.Context(), "p", "HOOK_SECRET"); err != nil {
		t.Fatal(err)
	}
	if got := hook("from-env"); got != http.StatusNoContent {
		t.Fatalf("after the project secret went: %d, want the environment variable again", got)
	}
}

// failingSecrets is a backend whose secrets cannot be read.
type failingSecrets struct{ *secretsBackend }

func (failingSecrets) Secret(context.Context, string, string) (string, bool, error) {
	return "", false, errors.New("secret HOOK_SECRET of project p cannot be opened with this agent's key")
}

// A project secret that cannot be read fails the webhook with a 500 that
// tells the caller nothing more (the agent logs the cause).
func TestWebhookSecretUnreadable(t *testing.T) {
	t.Parallel()
	b := failingSecrets{newSecretsBackend(t)}
	h := api.New(b, api.Options{Getenv: func(string) string { return "from-env" }})
	body := []byte(`{}`)
	rec := call(h, http.MethodPost, "/hooks/p/signed", body, map[string]string{triggers.SignatureHeader: triggers.Sign([]byte("from-env"), body)})
	e := decodeError(t, rec)
	if rec.Code != http.StatusInternalServerError || e.Error.Code != "internal" || strings.Contains(rec.Body.String(), "key") {
		t.Fatalf("got %d %s; want a bare 500", rec.Code, rec.Body)
	}
}
