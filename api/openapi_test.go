package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/labstack/echo/v5"
	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/api"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/triggers"
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
	// What kin-openapi's Validate lets through: response keys that are no
	// status ("2000"); and operations without an id, which the other
	// tests name operations by.
	statusKey := regexp.MustCompile(`^([1-5][0-9][0-9]|[1-5]XX|default)$`)
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.OperationID == "" {
				t.Errorf("%s %s has no operationId", method, path)
			}
			for code := range op.Responses.Map() {
				if !statusKey.MatchString(code) {
					t.Errorf("%s %s: response %q is not a status, a range (4XX) or default", method, path, code)
				}
			}
		}
	}
	h := api.New(&scopeBackend{}, api.Options{Tokens: []api.Token{api.NewToken("admin", api.ScopeAdmin)}})
	var rec *httptest.ResponseRecorder
	for _, auth := range []string{"", "Bearer wrong", "Bearer admin"} {
		rec = call(h, http.MethodGet, "/api/v1/openapi.json", nil, map[string]string{"Authorization": auth})
		if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
			t.Fatalf("GET /api/v1/openapi.json with Authorization %q: %d %s", auth, rec.Code, rec.Header().Get("Content-Type"))
		}
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

// conformance runs requests through a real agent's handler and checks each
// request (unless it breaks the spec on purpose) and each answer against
// the spec: the path and method are described, the status is listed for
// the operation, and headers and JSON body match its schemas.
type conformance struct {
	t      *testing.T
	doc    *openapi3.T
	router routers.Router
	h      http.Handler
	// answered holds "operationId status" for every answer validated.
	answered map[string]bool
}

// specCall is one request of a conformance test and the status it must get.
type specCall struct {
	method, path string
	token        string // sent as "Authorization: Bearer <token>" when set
	contentType  string
	body         []byte
	header       map[string]string
	want         int
	// offSpec marks a request that breaks the spec on purpose (a bad
	// body or parameter): only its answer is validated.
	offSpec bool
	// bodyUnchecked, when set, says why openapi3filter cannot check the
	// request's body against the spec: the rest of it is checked.
	bodyUnchecked string
}

// registerBodyDecoders teaches openapi3filter the request types it does
// not know (it keeps decoders in a package-level table, hence once).
var registerBodyDecoders = sync.OnceFunc(func() {
	openapi3filter.RegisterBodyDecoder("application/gzip", openapi3filter.FileBodyDecoder)
	openapi3filter.RegisterBodyDecoder("application/javascript", openapi3filter.PlainBodyDecoder)
})

func newConformance(t *testing.T, h http.Handler) *conformance {
	t.Helper()
	registerBodyDecoders()
	doc := loadSpec(t)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("route the spec: %v", err)
	}
	return &conformance{t: t, doc: doc, router: router, h: h, answered: map[string]bool{}}
}

func (x specCall) request() *http.Request {
	r := httptest.NewRequest(x.method, x.path, bytes.NewReader(x.body))
	if x.contentType != "" {
		r.Header.Set("Content-Type", x.contentType)
	}
	if x.token != "" {
		r.Header.Set("Authorization", "Bearer "+x.token)
	}
	for k, v := range x.header {
		r.Header.Set(k, v)
	}
	return r
}

// do serves x and validates it; it returns the answer.
func (c *conformance) do(x specCall) *httptest.ResponseRecorder {
	c.t.Helper()
	what := x.method + " " + x.path
	req := x.request()
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		c.t.Fatalf("%s: not in the spec: %v", what, err)
	}
	ctx := c.t.Context()
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if !x.offSpec {
		reqOpts := *opts
		reqOpts.ExcludeRequestBody = x.bodyUnchecked != ""
		in := *in
		in.Options = &reqOpts
		if err := openapi3filter.ValidateRequest(ctx, &in); err != nil {
			c.t.Errorf("%s: the request does not match the spec: %v", what, err)
		}
	}
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, x.request())
	if rec.Code != x.want {
		c.t.Fatalf("%s: %d %s, want %d", what, rec.Code, rec.Body, x.want)
	}
	if route.Operation.Responses.Status(rec.Code) == nil {
		c.t.Errorf("%s: status %d is not listed in the spec for %s", what, rec.Code, route.Operation.OperationID)
	}
	err = openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: rec.Code, Header: rec.Header(),
		Body: io.NopCloser(bytes.NewReader(rec.Body.Bytes())), Options: opts,
	})
	if err != nil {
		c.t.Errorf("%s: the answer (%d %s) does not match the spec: %v", what, rec.Code, rec.Body, err)
	}
	c.answered[fmt.Sprintf("%s %d", route.Operation.OperationID, rec.Code)] = true
	return rec
}

// checkErrorBody validates an answer no operation describes (an unknown
// path, a method a path does not take) against the ErrorBody schema.
func (c *conformance) checkErrorBody(what string, rec *httptest.ResponseRecorder) {
	c.t.Helper()
	var v any
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		c.t.Fatalf("%s: %d %s: %v", what, rec.Code, rec.Body, err)
	}
	schema := c.doc.Components.Schemas["ErrorBody"].Value
	if err := schema.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		c.t.Errorf("%s: %d %s is not an ErrorBody: %v", what, rec.Code, rec.Body, err)
	}
}

// notCalledYet names the operations (by operationId) that
// TestOpenAPIAnswersMatch does not call yet, each with the reason: a route
// described before its calls are written goes here, not unchecked. Keep
// it empty.
var notCalledYet = map[string]string{}

// checkEverySuccess fails for each operation of the spec whose success
// was never validated, unless notCalledYet names it.
func (c *conformance) checkEverySuccess() {
	c.t.Helper()
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			if why, ok := notCalledYet[op.OperationID]; ok {
				c.t.Logf("%s %s (%s) is not called: %s", method, path, op.OperationID, why)
				continue
			}
			ok := false
			for code := range op.Responses.Map() {
				ok = ok || strings.HasPrefix(code, "2") && c.answered[op.OperationID+" "+code]
			}
			if !ok {
				c.t.Errorf("%s %s (%s): no success answer was validated", method, path, op.OperationID)
			}
		}
	}
}

// The tokens of the conformance test's agent.
const (
	adminToken   = "admin-token"
	readerToken  = "reader-token" // read:other, nothing of shop
	metricsToken = "metrics-token"
)

// startConformanceAgent runs a real agent on embedded defaults (free
// loopback ports, a temporary data dir), with API tokens, a metrics token
// and small body limits; it stops when the test ends.
func startConformanceAgent(t *testing.T) *agent.Agent {
	t.Helper()
	cfg := agent.Defaults()
	cfg.HTTPAddr, cfg.EmbeddedBrokerAddr, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
	cfg.AgentID = "openapi-agent"
	cfg.ShutdownTimeout = agent.Duration(5 * time.Second)
	cfg.Tokens = []agent.Token{
		{Token: adminToken, Scopes: []string{"admin"}},
		{Token: readerToken, Scopes: []string{"read:other"}},
	}
	cfg.MetricsToken = metricsToken
	cfg.MaxBodyBytes, cfg.MaxBundleBytes = 4<<10, 64<<10
	a, err := agent.New(cfg, nil)
	if err != nil {
		t.Fatalf("new agent: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent stopped with: %v", err)
		}
	})
	select {
	case <-a.Started():
	case err := <-done:
		t.Fatalf("agent stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("agent not started within 30s")
	}
	return a
}

// shopFiles is the project the conformance test deploys: webhooks that
// answer JSON, nothing, a failure, or need a signature; one that
// publishes to a listener whose operation fails without redelivery, so
// that the message is dead-lettered at once.
var shopFiles = map[string]string{
	"opsrunner.yaml": `project: shop
operations:
  - {name: echo, script: echo.js, webhook: {path: echo}}
  - {name: quiet, script: quiet.js, webhook: {path: quiet}}
  - {name: fail, script: fail.js, webhook: {path: fail}}
  - {name: signed, script: quiet.js, webhook: {path: signed, secretEnv: HOOK_KEY}}
  - {name: publish, script: publish.js, webhook: {path: publish}}
  - {name: poison, script: fail.js}
listeners:
  - name: in
    destination: /queue/openapi.in
    operations: [poison]
    redelivery: {maxRedeliveries: 0}
schedules:
  - {name: nightly, cron: "0 3 * * *", timezone: Europe/Berlin, operations: [quiet]}
`,
	"echo.js":    "function handle(event) { log.info('echo'); return {got: event.body}; }\n",
	"quiet.js":   "function handle(event) {}\n",
	"fail.js":    "function handle(event) { throw new Error('refused'); }\n",
	"publish.js": "function handle(event) { SendMessage('/queue/openapi.in', 'poison'); }\n",
}

// bundleOf packs files as a gzipped tar bundle.
func bundleOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	m := map[string][]byte{}
	for k, v := range files {
		m[k] = []byte(v)
	}
	var buf bytes.Buffer
	if err := scripts.WriteBundle(&buf, m); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Real requests to a real agent, for every operation of the spec: its
// success and its main errors get the statuses the spec lists, with
// headers and bodies its schemas describe; the requests match the spec
// too, except those that break it on purpose.
func TestOpenAPIAnswersMatch(t *testing.T) {
	a := startConformanceAgent(t)
	c := newConformance(t, a.Handler())
	healthCalls(c)
	deployCalls(c)
	projectCalls(c)
	secretCalls(c)
	listenerCalls(c)
	runID := webhookCalls(c)
	runCalls(c, runID)
	deadLetterCalls(c)
	scheduleCalls(c)
	deleteCalls(c)
	c.do(specCall{method: "GET", path: "/api/v1/info", token: readerToken, want: 200})
	c.do(specCall{method: "GET", path: "/api/v1/info", want: 401})
	c.do(specCall{method: "GET", path: "/api/v1/broker/destinations", token: adminToken, want: 200})
	c.do(specCall{method: "GET", path: "/api/v1/broker/destinations", token: readerToken, want: 403})
	c.do(specCall{method: "GET", path: "/api/v1/cluster/members", token: adminToken, want: 200})
	c.do(specCall{method: "GET", path: "/api/v1/cluster/members", want: 401})
	c.checkErrorBody("an unknown path", c.serve(specCall{method: "GET", path: "/api/v1/nowhere", token: adminToken}, 404))
	c.checkErrorBody("a method the path does not take", c.serve(specCall{method: "DELETE", path: "/api/v1/runs", token: adminToken}, 405))
	c.checkEverySuccess()
}

// serve serves x without the spec (its path or method is not described)
// and checks its status.
func (c *conformance) serve(x specCall, want int) *httptest.ResponseRecorder {
	c.t.Helper()
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, x.request())
	if rec.Code != want {
		c.t.Fatalf("%s %s: %d %s, want %d", x.method, x.path, rec.Code, rec.Body, want)
	}
	return rec
}

func healthCalls(c *conformance) {
	c.do(specCall{method: "GET", path: "/healthz", want: 200})
	c.do(specCall{method: "GET", path: "/readyz", want: 200})
	c.do(specCall{method: "GET", path: "/metrics", token: metricsToken, want: 200})
	c.do(specCall{method: "GET", path: "/metrics", want: 401})
	c.do(specCall{method: "GET", path: "/metrics", token: readerToken, want: 403})
	c.do(specCall{method: "GET", path: "/api/v1/openapi.json", want: 200})
}

func deployCalls(c *conformance) {
	t := c.t
	gz := bundleOf(t, shopFiles)
	c.do(specCall{method: "PUT", path: "/api/v1/projects/shop", token: adminToken, contentType: "application/gzip", body: gz, want: 201})
	c.do(specCall{method: "PUT", path: "/api/v1/projects/shop", contentType: "application/gzip", body: gz, want: 401})
	c.do(specCall{method: "PUT", path: "/api/v1/projects/shop", token: readerToken, contentType: "application/gzip", body: gz, want: 403})
	mp, ct := multipartOf(t, shopFiles)
	c.do(specCall{method: "PUT", path: "/api/v1/projects/shop", token: adminToken, contentType: ct, body: mp, want: 201,
		bodyUnchecked: "its multipart decoder finds a part's schema in properties only, not in additionalProperties"})

	broken := maps.Clone(shopFiles)
	broken["echo.js"] = "function handle(event) { return ; ) }\n"
	rec := c.do(specCall{method: "PUT", path: "/api/v1/projects/shop", token: adminToken, contentType: "application/gzip", body: bundleOf(t, broken), want: 400})
	if !strings.Contains(rec.Body.String(), `"file":"echo.js"`) {
		t.Errorf("a script error's answer does not locate it: %s", rec.Body)
	}
	c.do(specCall{method: "PUT", path: "/api/v1/projects/Shop!", token: adminToken, contentType: "application/gzip", body: gz, want: 400, offSpec: true})
	c.do(specCall{method: "PUT", path: "/api/v1/projects/shop", token: adminToken, contentType: "text/plain", body: []byte("x"), want: 415, offSpec: true})
	noise := make([]byte, 70<<10) // does not compress: the bundle is over the agent's 64 KiB
	rand.Read(noise)
	big := bundleOf(t, map[string]string{"opsrunner.yaml": shopFiles["opsrunner.yaml"], "noise.bin": string(noise)})
	c.do(specCall{method: "PUT", path: "/api/v1/projects/shop", token: adminToken, contentType: "application/gzip", body: big, want: 413})
}

// multipartOf packs files as a multipart upload, one part per file.
func multipartOf(t *testing.T, files map[string]string) (body []byte, contentType string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for name, data := range files {
		part, err := w.CreateFormFile(name, name)
		if err != nil {
			t.Fatal(err)
		}
		part.Write([]byte(data))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), w.FormDataContentType()
}

func projectCalls(c *conformance) {
	c.do(specCall{method: "GET", path: "/api/v1/projects", token: adminToken, want: 200})
	c.do(specCall{method: "GET", path: "/api/v1/projects", token: readerToken, want: 200})
	c.do(specCall{method: "GET", path: "/api/v1/projects/shop", token: adminToken, want: 200})
	c.do(specCall{method: "GET", path: "/api/v1/projects/shop", token: readerToken, want: 403})
	c.do(specCall{method: "GET", path: "/api/v1/projects/nope", token: adminToken, want: 404})

	rollback := func(body string, want int, offSpec bool) {
		c.do(specCall{method: "POST", path: "/api/v1/projects/shop/rollback", token: adminToken,
			contentType: "application/json", body: []byte(body), want: want, offSpec: offSpec})
	}
	rollback(`{"version": 1}`, 200, false)
	rollback(`{"version": 0}`, 400, true)
	rollback(`{"version": 99}`, 404, false)

	script := func(op, src string, want int) {
		c.do(specCall{method: "PUT", path: "/api/v1/projects/shop/operations/" + op, token: adminToken,
			contentType: "application/javascript", body: []byte(src), want: want})
	}
	script("echo", shopFiles["echo.js"], 201)
	script("echo", "function handle( {\n", 400)
	script("nothing", shopFiles["echo.js"], 404)
}

func secretCalls(c *conformance) {
	secret := func(method, project, name, value string, want int, offSpec bool) {
		c.do(specCall{method: method, path: "/api/v1/projects/" + project + "/secrets/" + name, token: adminToken,
			contentType: "text/plain", body: []byte(value), want: want, offSpec: offSpec})
	}
	secret("PUT", "shop", "HOOK_KEY", "s3cret", 204, false)
	secret("PUT", "shop", "GONE", "soon", 204, false)
	secret("PUT", "shop", "bad%20name", "x", 400, false)
	secret("DELETE", "shop", "GONE", "", 204, false)
	secret("DELETE", "shop", "GONE", "", 404, false)
	c.do(specCall{method: "GET", path: "/api/v1/projects/shop/secrets", token: adminToken, want: 200})
	c.do(specCall{method: "GET", path: "/api/v1/projects/Shop!/secrets", token: adminToken, want: 400, offSpec: true})
	c.do(specCall{method: "GET", path: "/api/v1/projects/shop/secrets", token: readerToken, want: 403})
}

func listenerCalls(c *conformance) {
	c.do(specCall{method: "GET", path: "/api/v1/listeners?q=in", token: adminToken, want: 200})
	state := func(path, body string, want int, offSpec bool) {
		c.do(specCall{method: "PUT", path: path, token: adminToken, contentType: "application/json", body: []byte(body), want: want, offSpec: offSpec})
	}
	const l = "/api/v1/listeners/shop%2Fin"
	state(l+"/state", `{"enabled": false}`, 200, false)
	state(l+"/state", `{"on": true}`, 400, true)
	state("/api/v1/listeners/shop%2Fnone/state", `{"enabled": true}`, 404, false)
	state(l+"/state", `{"enabled": true}`, 200, false)
	state(l+"/operations/poison/state", `{"enabled": true}`, 200, false)
	state(l+"/operations/nothing/state", `{"enabled": true}`, 404, false)
}

// webhookCalls returns the id of a run of shop's echo.
func webhookCalls(c *conformance) string {
	t := c.t
	hook := func(path string, x specCall) *httptest.ResponseRecorder {
		x.method, x.path = "POST", "/hooks/shop/"+path
		if x.contentType == "" && x.body != nil {
			x.contentType = "application/json"
		}
		return c.do(x)
	}
	rec := hook("echo", specCall{body: []byte(`{"order": 1}`), want: 200})
	runID := rec.Header().Get("X-Opsrunner-Run")
	hook("echo", specCall{body: []byte(`{"order": 2}`), header: map[string]string{"Prefer": "respond-async"}, want: 202})
	hook("quiet", specCall{want: 204})
	hook("fail", specCall{want: 500})
	hook("echo", specCall{body: []byte(`{"order": `), want: 400, offSpec: true})
	hook("none", specCall{want: 404})
	hook("echo", specCall{body: []byte(`"` + strings.Repeat("x", 5<<10) + `"`), want: 413}) // over the agent's 4 KiB

	body := []byte(`{"signed": true}`)
	hook("signed", specCall{body: body, want: 401})
	hook("signed", specCall{body: body, header: map[string]string{"X-Opsrunner-Signature": triggers.Sign([]byte("s3cret"), body)}, want: 204})

	key := map[string]string{"Idempotency-Key": "order-3"}
	first := hook("echo", specCall{body: []byte(`{"order": 3}`), header: key, want: 200})
	again := hook("echo", specCall{body: []byte(`{"order": 3}`), header: key, want: 200})
	if first.Header().Get("X-Opsrunner-Run") != again.Header().Get("X-Opsrunner-Run") {
		t.Errorf("a repeated Idempotency-Key ran again")
	}
	hook("echo", specCall{body: []byte(`{"order": 4}`), header: key, want: 422})
	return runID
}

func runCalls(c *conformance, runID string) {
	c.do(specCall{method: "GET", path: "/api/v1/runs", token: adminToken, want: 200})
	c.do(specCall{method: "GET", path: "/api/v1/runs?project=shop&operation=echo&status=succeeded&since=15m&limit=1", token: adminToken, want: 200})
	c.do(specCall{method: "GET", path: "/api/v1/runs?outcome=commited", token: adminToken, want: 400, offSpec: true})
	c.do(specCall{method: "GET", path: "/api/v1/runs?limit=5000", token: adminToken, want: 400, offSpec: true})
	c.do(specCall{method: "GET", path: "/api/v1/runs?project=shop", token: readerToken, want: 403})
	c.do(specCall{method: "GET", path: "/api/v1/runs/" + runID, token: adminToken, want: 200})
	c.do(specCall{method: "GET", path: "/api/v1/runs/" + runID, token: readerToken, want: 403})
	c.do(specCall{method: "GET", path: "/api/v1/runs/no-such-run", token: adminToken, want: 404})
}

// deadLetterCalls has shop's publish webhook send a message that its
// listener's operation fails, waits for its dead letter, and replays it.
func deadLetterCalls(c *conformance) {
	c.do(specCall{method: "POST", path: "/hooks/shop/publish", want: 204})
	list := specCall{method: "GET", path: "/api/v1/deadletters?listener=shop/in", token: adminToken, want: 200}
	first := c.waitDeadLetter(list, "")
	c.do(list)
	c.do(specCall{method: "GET", path: "/api/v1/deadletters", token: readerToken, want: 200})
	c.do(specCall{method: "GET", path: "/api/v1/deadletters", want: 401})
	c.do(specCall{method: "GET", path: "/api/v1/deadletters/" + first, token: adminToken, want: 200})
	c.do(specCall{method: "GET", path: "/api/v1/deadletters/no-such-letter", token: adminToken, want: 404})
	replay := "/api/v1/deadletters/" + first + "/replay"
	c.do(specCall{method: "POST", path: replay, token: readerToken, want: 403})
	c.do(specCall{method: "POST", path: replay, token: adminToken, want: 202})
	c.do(specCall{method: "POST", path: "/api/v1/deadletters/no-such-letter/replay", token: adminToken, want: 404})
	// The replayed message fails again: a second dead letter, dropped.
	second := "/api/v1/deadletters/" + c.waitDeadLetter(list, first)
	c.do(specCall{method: "DELETE", path: second, token: readerToken, want: 403})
	c.do(specCall{method: "DELETE", path: second, token: adminToken, want: 204})
	c.do(specCall{method: "DELETE", path: second, token: adminToken, want: 404})
}

// waitDeadLetter polls list until it holds a dead letter other than
// except, and returns its id.
func (c *conformance) waitDeadLetter(list specCall, except string) string {
	t := c.t
	deadline := time.Now().Add(time.Minute) // a bound for a hang, not a speed
	for {
		var page struct {
			DeadLetters []struct {
				ID string `json:"id"`
			} `json:"deadLetters"`
		}
		if err := json.Unmarshal(c.serve(list, 200).Body.Bytes(), &page); err != nil {
			t.Fatal(err)
		}
		for _, d := range page.DeadLetters {
			if d.ID != except {
				return d.ID
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no dead letter within a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scheduleCalls lists, turns off and runs now shop's nightly schedule.
func scheduleCalls(c *conformance) {
	c.do(specCall{method: "GET", path: "/api/v1/schedules?q=night", token: adminToken, want: 200})
	c.do(specCall{method: "GET", path: "/api/v1/schedules", token: readerToken, want: 200})
	c.do(specCall{method: "GET", path: "/api/v1/schedules", want: 401})
	state := func(id, token, body string, want int) {
		c.do(specCall{method: "PUT", path: "/api/v1/schedules/" + id + "/state", token: token,
			contentType: "application/json", body: []byte(body), want: want})
	}
	state("shop%2Fnightly", adminToken, `{"enabled": false}`, 200)
	state("shop%2Fnightly", readerToken, `{"enabled": true}`, 403)
	state("shop%2Fnowhere", adminToken, `{"enabled": true}`, 404)
	c.do(specCall{method: "POST", path: "/api/v1/schedules/shop%2Fnightly/run", token: adminToken, want: 202})
	c.do(specCall{method: "POST", path: "/api/v1/schedules/shop%2Fnowhere/run", token: adminToken, want: 404})
}

// deleteCalls deploys a project of one webhook and deletes it.
func deleteCalls(c *conformance) {
	gone := bundleOf(c.t, map[string]string{
		"opsrunner.yaml": "project: gone\noperations:\n  - {name: echo, script: echo.js, webhook: {path: echo}}\n",
		"echo.js":        shopFiles["echo.js"],
	})
	c.do(specCall{method: "PUT", path: "/api/v1/projects/gone", token: adminToken, contentType: "application/gzip", body: gone, want: 201})
	c.do(specCall{method: "DELETE", path: "/api/v1/projects/gone", token: readerToken, want: 403})
	c.do(specCall{method: "DELETE", path: "/api/v1/projects/gone", token: adminToken, want: 204})
	c.do(specCall{method: "DELETE", path: "/api/v1/projects/gone", token: adminToken, want: 404})
}

// docs/api.md's table of endpoints lists exactly the spec's operations.
func TestAPIDocListsEveryEndpoint(t *testing.T) {
	t.Parallel()
	doc := loadSpec(t)
	text, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	row := regexp.MustCompile("(?m)^\\| `([A-Z]+) ([^`?]+)")
	for _, m := range row.FindAllStringSubmatch(string(text), -1) {
		listed[m[1]+" "+m[2]] = true
	}
	described := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			described[method+" "+path] = true
			if !listed[method+" "+path] {
				t.Errorf("docs/api.md's table of endpoints does not list %s %s", method, path)
			}
		}
	}
	for _, e := range slices.Sorted(maps.Keys(listed)) {
		if !described[e] {
			t.Errorf("docs/api.md lists %s, which api/openapi.yaml does not describe", e)
		}
	}
}
