package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opsrunner/opsrunner/api"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
	"github.com/opsrunner/opsrunner/triggers"
)

// hookBackend serves one webhook, /hooks/p/op, and records the
// invocations it gets; other Backend methods are not called by these
// tests (the nil interface panics if they are).
type hookBackend struct {
	api.Backend
	got []api.Invocation
}

func (b *hookBackend) Webhook(project, path string) (*scripts.Project, *scripts.Operation, error) {
	if project != "p" || path != "op" {
		return nil, nil, store.ErrNotFound
	}
	return &scripts.Project{Name: "p"}, &scripts.Operation{Name: "op"}, nil
}

func (b *hookBackend) ProxyTarget() string { return "" }

func (b *hookBackend) Invoke(_ context.Context, inv api.Invocation) (store.Run, *triggers.Response, error) {
	b.got = append(b.got, inv)
	return store.Run{ID: "r1", Status: store.StatusSucceeded}, &triggers.Response{Status: http.StatusNoContent}, nil
}

func post(h http.Handler, body string, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/hooks/p/op", strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// With an Idempotency-Key the invocation carries the body's SHA-256, so
// that the backend can tell a repeat from a reuse with another body.
func TestWebhookIdempotencyKeyCarriesTheBodyDigest(t *testing.T) {
	t.Parallel()
	b := &hookBackend{}
	h := api.New(b, api.Options{})
	sum := sha256.Sum256([]byte(`{"n":1}`))
	emptySum := sha256.Sum256(nil)
	for _, tt := range []struct {
		body, key, digest string
	}{
		{`{"n":1}`, "k-1", hex.EncodeToString(sum[:])},
		{"", "k-2", hex.EncodeToString(emptySum[:])},
		{`{"n":1}`, "", ""},
	} {
		b.got = nil
		rec := post(h, tt.body, map[string]string{"Content-Type": "application/json", "Idempotency-Key": tt.key})
		if rec.Code != http.StatusNoContent || len(b.got) != 1 {
			t.Fatalf("key %q: %d %s, %d invocations", tt.key, rec.Code, rec.Body, len(b.got))
		}
		if inv := b.got[0]; inv.IdempotencyKey != tt.key || inv.BodyDigest != tt.digest {
			t.Errorf("key %q: invocation key %q digest %q, want digest %q", tt.key, inv.IdempotencyKey, inv.BodyDigest, tt.digest)
		}
	}
}

// Invalid JSON sent as JSON is answered 400 before any run starts.
func TestWebhookInvalidJSONRunsNothing(t *testing.T) {
	t.Parallel()
	b := &hookBackend{}
	rec := post(api.New(b, api.Options{}), "{\n\"a\" 1}", map[string]string{"Content-Type": "application/json"})
	want := `{"error":{"code":"invalid_json","message":"invalid JSON body: invalid character '1' after object key at line 2, column 5",` +
		`"details":{"column":5,"line":2,"offset":6}}}`
	if rec.Code != http.StatusBadRequest || strings.TrimSpace(rec.Body.String()) != want || len(b.got) != 0 {
		t.Fatalf("got %d %s (%d invocations); want 400 %s and no run", rec.Code, rec.Body, len(b.got), want)
	}
}
