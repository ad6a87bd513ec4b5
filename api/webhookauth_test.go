package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/opsrunner/opsrunner/api"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
	"github.com/opsrunner/opsrunner/triggers"
)

// tokenHookBackend serves /hooks/p/op, which requires a bearer token equal
// to project p's secret HOOK_TOKEN (unset when token is empty), and counts
// the runs it starts.
type tokenHookBackend struct {
	api.Backend
	token string
	runs  int
}

func (b *tokenHookBackend) Webhook(project, path string) (*scripts.Project, *scripts.Operation, error) {
	if project != "p" || path != "op" {
		return nil, nil, store.ErrNotFound
	}
	return &scripts.Project{Name: "p"}, &scripts.Operation{Name: "op", Webhook: &scripts.Webhook{Path: "op", TokenSecret: "HOOK_TOKEN"}}, nil
}

func (b *tokenHookBackend) ProxyTarget() string { return "" }

func (b *tokenHookBackend) Secret(_ context.Context, project, name string) (string, bool, error) {
	if project != "p" || name != "HOOK_TOKEN" || b.token == "" {
		return "", false, nil
	}
	return b.token, true, nil
}

func (b *tokenHookBackend) Invoke(context.Context, api.Invocation) (store.Run, *triggers.Response, error) {
	b.runs++
	return store.Run{ID: "r1", Status: store.StatusSucceeded}, &triggers.Response{Status: http.StatusOK, Body: []byte("ran")}, nil
}

// A webhook with tokenSecret runs its script only for the right bearer
// token; a missing or wrong one is 401, and an unset secret 503, with no run.
func TestWebhookTokenSecret(t *testing.T) {
	t.Parallel()
	const token = "hook-t0ken-8c1f"
	for _, tt := range []struct {
		name, secret, auth string
		status             int
		code               string // of the JSON error; "" for a run
		challenge          string // WWW-Authenticate
	}{
		{"right token", token, "Bearer " + token, http.StatusOK, "", ""},
		{"missing token", token, "", http.StatusUnauthorized, "unauthorized", "Bearer"},
		{"not a bearer token", token, "Basic " + token, http.StatusUnauthorized, "unauthorized", "Bearer"},
		{"empty token", token, "Bearer ", http.StatusUnauthorized, "unauthorized", "Bearer"},
		{"wrong token", token, "Bearer hook-t0ken-8c1e", http.StatusUnauthorized, "unauthorized", `Bearer error="invalid_token"`},
		{"a prefix of the token", token, "Bearer hook-t0ken", http.StatusUnauthorized, "unauthorized", `Bearer error="invalid_token"`},
		{"secret unset", "", "Bearer " + token, http.StatusServiceUnavailable, "unavailable", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := &tokenHookBackend{token: tt.secret}
			header := map[string]string{"Content-Type": "application/json"}
			if tt.auth != "" {
				header["Authorization"] = tt.auth
			}
			rec := post(api.New(b, api.Options{}), `{"n":1}`, header)
			if rec.Code != tt.status {
				t.Fatalf("status %d %s, want %d", rec.Code, rec.Body, tt.status)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
			if tt.code == "" {
				if b.runs != 1 || rec.Body.String() != "ran" {
					t.Fatalf("runs %d, body %s; want one run", b.runs, rec.Body)
				}
				return
			}
			if b.runs != 0 {
				t.Fatalf("%d runs started, want none", b.runs)
			}
			if want := `{"error":{"code":"` + tt.code + `"`; !strings.HasPrefix(rec.Body.String(), want) {
				t.Fatalf("body %s, want %s…", rec.Body, want)
			}
			if strings.Contains(rec.Body.String(), token) {
				t.Fatalf("the answer shows the token: %s", rec.Body)
			}
		})
	}
}
