package console_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/console"
)

func TestHandlerServesThePageForEveryConsolePath(t *testing.T) {
	t.Parallel()
	h := console.Handler()
	for _, path := range []string{"/", "/console", "/console/", "/console/listeners", "/console/runs/01JXYZ", "/console/no/such/page"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d", path, rec.Code)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("GET %s: Content-Type %q", path, ct)
		}
		if !strings.Contains(rec.Body.String(), `<script type="module" src="/console/assets/app.js">`) {
			t.Errorf("GET %s: not the console page", path)
		}
	}
}

func TestHandlerServesAssetsWithTypesAndAStrictPolicy(t *testing.T) {
	t.Parallel()
	h := console.Handler()
	for path, want := range map[string]string{
		"/console/assets/app.js":    "text/javascript; charset=utf-8",
		"/console/assets/style.css": "text/css; charset=utf-8",
		"/console/assets/icon.svg":  "image/svg+xml",
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != want {
			t.Fatalf("GET %s: %d %q, want 200 %q", path, rec.Code, rec.Header().Get("Content-Type"), want)
		}
		csp := rec.Header().Get("Content-Security-Policy")
		for _, part := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, part) {
				t.Errorf("GET %s: policy %q lacks %q", path, csp, part)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "http") {
			t.Errorf("GET %s: policy %q allows inline code or another host", path, csp)
		}
		if rec.Header().Get("Cache-Control") != "no-cache" || rec.Header().Get("ETag") == "" {
			t.Errorf("GET %s: Cache-Control %q, ETag %q", path, rec.Header().Get("Cache-Control"), rec.Header().Get("ETag"))
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", path)
		}
		// A second load with the ETag is answered 304, no body.
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("If-None-Match", rec.Header().Get("ETag"))
		again := httptest.NewRecorder()
		h.ServeHTTP(again, req)
		if again.Code != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match: %d, want 304", path, again.Code)
		}
	}
}

func TestHandlerRefusesUnknownAssetsAndOtherMethods(t *testing.T) {
	t.Parallel()
	h := console.Handler()
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/console/assets/nope.js", http.StatusNotFound},
		{http.MethodGet, "/console/assets/index.html", http.StatusNotFound},
		{http.MethodGet, "/elsewhere", http.StatusNotFound},
		{http.MethodPost, "/", http.StatusMethodNotAllowed},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, rec.Code, tc.want)
		}
	}
}

// The agent serves the page without a token, while its API needs one.
func TestAgentServesTheConsoleWithoutAToken(t *testing.T) {
	ta := startAgent(t, func(c *agent.Config) { c.Tokens = []agent.Token{{Token: "s3cret", Scopes: []string{"admin"}}} })
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/", http.StatusOK},
		{http.MethodHead, "/", http.StatusOK},
		{http.MethodGet, "/console", http.StatusOK},
		{http.MethodGet, "/console/", http.StatusOK},
		{http.MethodGet, "/console/runs/some-run", http.StatusOK},
		{http.MethodGet, "/console/assets/missing.js", http.StatusNotFound},
		{http.MethodPost, "/console/listeners", http.StatusMethodNotAllowed},
		{http.MethodGet, "/console/assets/app.js", http.StatusOK},
		{http.MethodGet, "/api/v1/listeners", http.StatusUnauthorized},
	} {
		status, body := ta.do(t, tc.method, tc.path, "", nil)
		if status != tc.want {
			t.Errorf("%s %s: %d, want %d: %s", tc.method, tc.path, status, tc.want, body)
		}
		if tc.method == http.MethodHead && len(body) != 0 {
			t.Errorf("HEAD %s answered a body", tc.path)
		}
	}
}
