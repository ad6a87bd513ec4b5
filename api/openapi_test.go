package api_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/labstack/echo/v5"
	"github.com/opsrunner/opsrunner/api"
)

// loadSpec loads and validates api/openapi.yaml, the file the server
// embeds, with kin-openapi: its loader resolves every $ref, and Validate
// checks the document against OpenAPI 3.1's rules (the Schema Objects as
// JSON Schema 2020-12).
func loadSpec(t testing.TB) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("openapi.yaml")
	if err != nil {
		t.Fatalf("load openapi.yaml: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	return doc
}

// api/openapi.yaml is a valid OpenAPI 3.1 document, and GET
// /api/v1/openapi.json serves it, as JSON, to callers without a token even
// when the API needs tokens.
func TestOpenAPIValid(t *testing.T) {
	t.Parallel()
	doc := loadSpec(t)
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") || !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi: %q, want 3.1.x", doc.OpenAPI)
	}
	h := api.New(&scopeBackend{}, api.Options{Tokens: []api.Token{api.NewToken("admin", api.ScopeAdmin)}})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/openapi.json", nil))
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("GET /api/v1/openapi.json without a token: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	served, err := openapi3.NewLoader().LoadFromData(rec.Body.Bytes())
	if err != nil {
		t.Fatalf("load the served description: %v", err)
	}
	want, _ := json.Marshal(doc)
	got, _ := json.Marshal(served)
	if string(got) != string(want) {
		t.Errorf("the served description differs from openapi.yaml")
	}
}

// Every route the server registers is described in the spec, and every
// path and method the spec describes is served: adding a route without
// describing it (or the reverse) fails here.
func TestOpenAPICoversRoutes(t *testing.T) {
	t.Parallel()
	doc := loadSpec(t)
	e, ok := api.New(&scopeBackend{}, api.Options{}).(*echo.Echo)
	if !ok {
		t.Fatal("api.New no longer returns an *echo.Echo: read its routes another way")
	}
	served := map[string]bool{}
	for _, r := range e.Router().Routes() {
		served[r.Method+" "+echoToOpenAPIPath(r.Path)] = true
	}
	described := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			described[method+" "+path] = true
		}
	}
	for _, r := range slices.Sorted(maps.Keys(served)) {
		if !described[r] {
			t.Errorf("%s is served but not described in api/openapi.yaml: add it under paths", r)
		}
	}
	for _, r := range slices.Sorted(maps.Keys(described)) {
		if !served[r] {
			t.Errorf("%s is described in api/openapi.yaml but not served", r)
		}
	}
}

// echoParam is an echo path parameter, ":name".
var echoParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// echoToOpenAPIPath writes echo's "/runs/:id" as OpenAPI's "/runs/{id}".
func echoToOpenAPIPath(p string) string { return echoParam.ReplaceAllString(p, "{$1}") }
