package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/labstack/echo/v5"
	"github.com/opsrunner/opsrunner/api"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// scopeBackend holds two projects, shop and blog, each with a listener, a
// run, a dead letter and a secret, and answers every call the management
// API makes with them. It records the calls that change something.
type scopeBackend struct {
	api.Backend
	changed []string
}

var scopeProjects = []string{"shop", "blog"}

func (b *scopeBackend) change(what string) { b.changed = append(b.changed, what) }

func (b *scopeBackend) Deploy(_ context.Context, project string, _ map[string][]byte) (store.ProjectVersion, error) {
	b.change("deploy " + project)
	return store.ProjectVersion{Project: project, Version: 2}, nil
}

func (b *scopeBackend) ReplaceScript(_ context.Context, project, _ string, _ []byte) (store.ProjectVersion, error) {
	b.change("replace " + project)
	return store.ProjectVersion{Project: project, Version: 2}, nil
}

func (b *scopeBackend) Rollback(_ context.Context, project string, _ int) (store.ProjectVersion, error) {
	b.change("rollback " + project)
	return store.ProjectVersion{Project: project, Version: 3}, nil
}

func (b *scopeBackend) Projects(context.Context) ([]store.ProjectInfo, error) {
	var out []store.ProjectInfo
	for _, p := range scopeProjects {
		out = append(out, store.ProjectInfo{Name: p, ActiveVersion: 1})
	}
	return out, nil
}

func (b *scopeBackend) Listeners(context.Context, string) ([]api.ListenerView, error) {
	var out []api.ListenerView
	for _, p := range scopeProjects {
		out = append(out, api.ListenerView{ID: p + "/in", Name: "in", Project: p, Enabled: true,
			Operations: []api.BindingView{{Name: "op", Enabled: true}}})
	}
	return out, nil
}

func (b *scopeBackend) SetListenerState(_ context.Context, id string, _ bool) error {
	b.change("listener " + id)
	return nil
}

func (b *scopeBackend) SetBindingState(_ context.Context, id, op string, _ bool) error {
	b.change("binding " + id + " " + op)
	return nil
}

func (b *scopeBackend) Runs(_ context.Context, f store.RunFilter) ([]store.Run, error) {
	var out []store.Run
	for _, p := range scopeProjects {
		if f.Project == "" || f.Project == p {
			out = append(out, store.Run{ID: "run-" + p, Project: p, Operation: "op"})
		}
	}
	return out, nil
}

func (b *scopeBackend) Run(_ context.Context, id string) (store.Run, error) {
	for _, p := range scopeProjects {
		if id == "run-"+p {
			return store.Run{ID: id, Project: p, Operation: "op"}, nil
		}
	}
	return store.Run{}, fmt.Errorf("run %s: %w", id, store.ErrNotFound)
}

func (b *scopeBackend) DeadLetters(context.Context, store.DeadLetterFilter) ([]store.DeadLetter, error) {
	var out []store.DeadLetter
	for _, p := range scopeProjects {
		out = append(out, store.DeadLetter{ID: "dl-" + p, Project: p, Listener: p + "/in"})
	}
	return out, nil
}

// DeadLetter makes the backend an api.DeadLetterReader.
func (b *scopeBackend) DeadLetter(_ context.Context, id string) (store.DeadLetter, error) {
	for _, p := range scopeProjects {
		if id == "dl-"+p {
			return store.DeadLetter{ID: id, Project: p, Listener: p + "/in"}, nil
		}
	}
	return store.DeadLetter{}, fmt.Errorf("dead letter %s: %w", id, store.ErrNotFound)
}

func (b *scopeBackend) DeleteDeadLetter(_ context.Context, id string) error {
	b.change("delete dead letter " + id)
	return nil
}

func (b *scopeBackend) DeleteProject(_ context.Context, project string) error {
	b.change("delete project " + project)
	return nil
}

func (b *scopeBackend) BrokerDestinations(context.Context) ([]api.Destination, bool, error) {
	return []api.Destination{{Destination: "/queue/shop.orders"}}, true, nil
}

func (b *scopeBackend) Info(context.Context) (api.Info, error) {
	return api.Info{Version: "test", Agent: "a1", BrokerAddr: "127.0.0.1:61613"}, nil
}

func (b *scopeBackend) ReplayDeadLetter(_ context.Context, id string) error {
	b.change("replay " + id)
	return nil
}

func (b *scopeBackend) Members(context.Context) (api.MembersView, error) {
	return api.MembersView{Leader: "a1"}, nil
}

func (b *scopeBackend) Metrics() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "opsrunner_up 1") })
}

func (b *scopeBackend) PutSecret(_ context.Context, project, name string, _ []byte) error {
	b.change("put secret " + project + " " + name)
	return nil
}

func (b *scopeBackend) Secrets(context.Context, string) ([]store.SecretInfo, error) {
	return []store.SecretInfo{{Name: "KEY"}}, nil
}

func (b *scopeBackend) DeleteSecret(_ context.Context, project, name string) error {
	b.change("delete secret " + project + " " + name)
	return nil
}

// The tokens of the scope tests: their values are their names.
var scopeTokens = []struct {
	name   string
	scopes []string
}{
	{"admin", []string{"admin"}},
	{"read-shop", []string{"read:shop"}},
	{"deploy-shop", []string{"deploy:shop"}},
	{"run-shop", []string{"run:shop"}},
	{"all-s", []string{"read:s*", "deploy:s*", "run:s*"}},
}

func newScopeServer(t *testing.T, opts api.Options) (http.Handler, *scopeBackend) {
	t.Helper()
	for _, tok := range scopeTokens {
		var scopes []api.Scope
		for _, s := range tok.scopes {
			sc, err := api.ParseScope(s)
			if err != nil {
				t.Fatal(err)
			}
			scopes = append(scopes, sc)
		}
		opts.Tokens = append(opts.Tokens, api.NewToken(tok.name, scopes...))
	}
	b := &scopeBackend{}
	return api.New(b, opts), b
}

func bearer(token string) map[string]string {
	if token == "" {
		return nil
	}
	return map[string]string{"Authorization": "Bearer " + token}
}

// endpoint is one request the scope table sends.
type endpoint struct {
	method, path string
	body         string
	contentType  string
}

func (e endpoint) String() string { return e.method + " " + e.path }

func gzipBundle(t *testing.T) string {
	t.Helper()
	var buf bytes.Buffer
	if err := scripts.WriteBundle(&buf, map[string][]byte{"opsrunner.yaml": []byte("project: shop\n")}); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// Every management endpoint × every kind of token → the status it
// answers. A token lacking the scope is 403 naming the scope it lacks (the
// "needs" column); admin may do everything; "all-s" holds read:s*,
// deploy:s* and run:s*, so it acts on shop and not on blog. Lists need a
// read scope on some project (read:* names that) and hold only the projects
// the token reads (TestListsShowOnlyReadableProjects). Cluster members
// and the agent's info need only a valid token; the API's description needs none.
func TestEveryEndpointChecksItsScope(t *testing.T) {
	t.Parallel()
	bundle := gzipBundle(t)
	on := `{"enabled": false}`
	table := []struct {
		endpoint
		needs string
		// the status for each token, in scopeTokens' order:
		// admin, read-shop, deploy-shop, run-shop, all-s
		want [5]int
	}{
		{endpoint{"PUT", "/api/v1/projects/shop", bundle, "application/gzip"}, "deploy:shop", [5]int{201, 403, 201, 403, 201}},
		{endpoint{"PUT", "/api/v1/projects/blog", bundle, "application/gzip"}, "deploy:blog", [5]int{201, 403, 403, 403, 403}},
		{endpoint{"GET", "/api/v1/projects", "", ""}, "read:*", [5]int{200, 200, 403, 403, 200}},
		{endpoint{"GET", "/api/v1/projects/shop", "", ""}, "read:shop", [5]int{200, 200, 403, 403, 200}},
		{endpoint{"GET", "/api/v1/projects/blog", "", ""}, "read:blog", [5]int{200, 403, 403, 403, 403}},
		{endpoint{"DELETE", "/api/v1/projects/shop", "", ""}, "deploy:shop", [5]int{204, 403, 204, 403, 204}},
		{endpoint{"DELETE", "/api/v1/projects/blog", "", ""}, "deploy:blog", [5]int{204, 403, 403, 403, 403}},
		{endpoint{"POST", "/api/v1/projects/shop/rollback", `{"version": 1}`, "application/json"}, "deploy:shop", [5]int{200, 403, 200, 403, 200}},
		{endpoint{"PUT", "/api/v1/projects/shop/secrets/KEY", "v", "text/plain"}, "deploy:shop", [5]int{204, 403, 204, 403, 204}},
		{endpoint{"GET", "/api/v1/projects/shop/secrets", "", ""}, "read:shop", [5]int{200, 200, 403, 403, 200}},
		{endpoint{"DELETE", "/api/v1/projects/shop/secrets/KEY", "", ""}, "deploy:shop", [5]int{204, 403, 204, 403, 204}},
		{endpoint{"PUT", "/api/v1/projects/shop/operations/op", "function handle() {}", "application/javascript"}, "deploy:shop", [5]int{201, 403, 201, 403, 201}},
		{endpoint{"GET", "/api/v1/listeners", "", ""}, "read:*", [5]int{200, 200, 403, 403, 200}},
		{endpoint{"PUT", "/api/v1/listeners/shop%2Fin/state", on, "application/json"}, "deploy:shop", [5]int{200, 403, 200, 403, 200}},
		{endpoint{"PUT", "/api/v1/listeners/blog%2Fin/state", on, "application/json"}, "deploy:blog", [5]int{200, 403, 403, 403, 403}},
		{endpoint{"PUT", "/api/v1/listeners/shop%2Fin/operations/op/state", on, "application/json"}, "deploy:shop", [5]int{200, 403, 200, 403, 200}},
		{endpoint{"GET", "/api/v1/schedules", "", ""}, "read:*", [5]int{200, 200, 403, 403, 200}},
		{endpoint{"PUT", "/api/v1/schedules/shop%2Fbeat/state", on, "application/json"}, "deploy:shop", [5]int{200, 403, 200, 403, 200}},
		{endpoint{"PUT", "/api/v1/schedules/blog%2Fbeat/state", on, "application/json"}, "deploy:blog", [5]int{200, 403, 403, 403, 403}},
		{endpoint{"POST", "/api/v1/schedules/shop%2Fbeat/run", "", ""}, "run:shop", [5]int{202, 403, 403, 202, 202}},
		{endpoint{"POST", "/api/v1/schedules/blog%2Fbeat/run", "", ""}, "run:blog", [5]int{202, 403, 403, 403, 403}},
		{endpoint{"GET", "/api/v1/runs", "", ""}, "read:*", [5]int{200, 200, 403, 403, 200}},
		{endpoint{"GET", "/api/v1/runs?project=shop", "", ""}, "read:shop", [5]int{200, 200, 403, 403, 200}},
		{endpoint{"GET", "/api/v1/runs?project=blog", "", ""}, "read:blog", [5]int{200, 403, 403, 403, 403}},
		{endpoint{"GET", "/api/v1/runs/run-shop", "", ""}, "read:shop", [5]int{200, 200, 403, 403, 200}},
		{endpoint{"GET", "/api/v1/runs/run-blog", "", ""}, "read:blog", [5]int{200, 403, 403, 403, 403}},
		{endpoint{"GET", "/api/v1/deadletters", "", ""}, "read:*", [5]int{200, 200, 403, 403, 200}},
		{endpoint{"GET", "/api/v1/deadletters/dl-shop", "", ""}, "read:shop", [5]int{200, 200, 403, 403, 200}},
		{endpoint{"GET", "/api/v1/deadletters/dl-blog", "", ""}, "read:blog", [5]int{200, 403, 403, 403, 403}},
		{endpoint{"DELETE", "/api/v1/deadletters/dl-shop", "", ""}, "deploy:shop", [5]int{204, 403, 204, 403, 204}},
		{endpoint{"DELETE", "/api/v1/deadletters/dl-blog", "", ""}, "deploy:blog", [5]int{204, 403, 403, 403, 403}},
		{endpoint{"POST", "/api/v1/deadletters/dl-shop/replay", "", ""}, "run:shop", [5]int{202, 403, 403, 202, 202}},
		{endpoint{"POST", "/api/v1/deadletters/dl-blog/replay", "", ""}, "run:blog", [5]int{202, 403, 403, 403, 403}},
		{endpoint{"GET", "/api/v1/cluster/members", "", ""}, "", [5]int{200, 200, 200, 200, 200}},
		{endpoint{"GET", "/api/v1/openapi.json", "", ""}, "", [5]int{200, 200, 200, 200, 200}},
		{endpoint{"GET", "/api/v1/info", "", ""}, "", [5]int{200, 200, 200, 200, 200}},
		{endpoint{"GET", "/api/v1/broker/destinations", "", ""}, "admin", [5]int{200, 403, 403, 403, 403}},
	}

	h, b := newScopeServer(t, api.Options{})
	tested := map[string]bool{}
	for _, row := range table {
		route := strings.Split(row.path, "?")[0]
		tested[row.method+" "+route] = true
		for i, tok := range scopeTokens {
			changedBefore := len(b.changed)
			rec := call(h, row.method, row.path, []byte(row.body), map[string]string{
				"Authorization": "Bearer " + tok.name, "Content-Type": row.contentType})
			if rec.Code != row.want[i] {
				t.Errorf("%s with %s: %d %s; want %d", row.endpoint, tok.name, rec.Code, rec.Body, row.want[i])
				continue
			}
			if rec.Code != http.StatusForbidden {
				continue
			}
			e := decodeError(t, rec)
			if want := "this token lacks the scope " + row.needs; e.Error.Code != "forbidden" || e.Error.Message != want || e.Error.Details["scope"] != row.needs {
				t.Errorf("%s with %s: %s; want code forbidden, message %q, details.scope %q", row.endpoint, tok.name, rec.Body, want, row.needs)
			}
			if len(b.changed) != changedBefore {
				t.Errorf("%s with %s was refused but reached the backend: %v", row.endpoint, tok.name, b.changed[changedBefore:])
			}
		}
	}

	// The table covers every route of /api/v1 (a concrete path per route).
	for _, r := range h.(*echo.Echo).Router().Routes() {
		if !strings.HasPrefix(r.Path, "/api/v1/") {
			continue
		}
		covered := false
		for key := range tested {
			method, path, _ := strings.Cut(key, " ")
			covered = covered || method == r.Method && routeMatches(r.Path, path)
		}
		if !covered {
			t.Errorf("route %s %s is not in the scope table", r.Method, r.Path)
		}
	}
}

// routeMatches reports whether path is one of pattern's paths (":x"
// segments match any one segment).
func routeMatches(pattern, path string) bool {
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return false
	}
	for i := range ps {
		if !strings.HasPrefix(ps[i], ":") && ps[i] != xs[i] {
			return false
		}
	}
	return true
}

// Without a token, or with one no configuration holds, every management
// endpoint is 401 with WWW-Authenticate, and nothing reaches the backend.
// The API's description is open (TestOpenAPIValid).
func TestEveryEndpointNeedsAValidToken(t *testing.T) {
	t.Parallel()
	h, b := newScopeServer(t, api.Options{})
	for _, r := range h.(*echo.Echo).Router().Routes() {
		if !strings.HasPrefix(r.Path, "/api/v1/") || r.Method+" "+r.Path == "GET /api/v1/openapi.json" {
			continue
		}
		path := strings.NewReplacer(":project", "shop", ":id", "run-shop", ":name", "KEY", ":operation", "op").Replace(r.Path)
		for _, auth := range []string{"", "Bearer", "Bearer admi", "Bearer admin2", "Basic YWRtaW46", "Bearer  admin"} {
			rec := call(h, r.Method, path, []byte("{}"), map[string]string{"Authorization": auth})
			if rec.Code != http.StatusUnauthorized || rec.Header().Get("WWW-Authenticate") != "Bearer" {
				t.Errorf("%s %s with Authorization %q: %d %s; want 401 with WWW-Authenticate", r.Method, path, auth, rec.Code, rec.Body)
			}
		}
	}
	if len(b.changed) != 0 {
		t.Fatalf("unauthenticated requests reached the backend: %v", b.changed)
	}
}

// A list answers only the items of the projects the token reads; a page
// of runs shorter than the limit still leads on (next) when the store
// had more.
func TestListsShowOnlyReadableProjects(t *testing.T) {
	t.Parallel()
	h, _ := newScopeServer(t, api.Options{})
	for _, tc := range []struct {
		path, field, key string
	}{
		{"/api/v1/projects", "projects", "name"},
		{"/api/v1/listeners", "listeners", "project"},
		{"/api/v1/runs", "runs", "project"},
		{"/api/v1/deadletters", "deadLetters", "project"},
	} {
		for token, want := range map[string][]string{"admin": {"shop", "blog"}, "read-shop": {"shop"}, "all-s": {"shop"}} {
			rec := call(h, "GET", tc.path, nil, bearer(token))
			var page map[string][]map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil || rec.Code != 200 {
				t.Fatalf("GET %s with %s: %d %s", tc.path, token, rec.Code, rec.Body)
			}
			var got []string
			for _, item := range page[tc.field] {
				got = append(got, fmt.Sprint(item[tc.key]))
			}
			if !slices.Equal(got, want) {
				t.Errorf("GET %s with %s lists projects %v; want %v", tc.path, token, got, want)
			}
		}
	}

	rec := call(h, "GET", "/api/v1/runs?limit=2", nil, bearer("read-shop"))
	var page struct {
		Runs []store.Run `json:"runs"`
		Next string      `json:"next"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil || len(page.Runs) != 1 || page.Next != "run-blog" {
		t.Fatalf("a page of 2 runs read with read:shop: %s; want run-shop alone and next run-blog", rec.Body)
	}
}

// With no tokens configured /api/v1 is open, as before tokens existed.
func TestNoTokensLeaveTheAPIOpen(t *testing.T) {
	t.Parallel()
	h := api.New(&scopeBackend{}, api.Options{})
	for _, path := range []string{"/api/v1/projects", "/api/v1/runs/run-blog", "/api/v1/listeners"} {
		if rec := call(h, "GET", path, nil, nil); rec.Code != http.StatusOK {
			t.Errorf("GET %s without tokens configured: %d %s", path, rec.Code, rec.Body)
		}
	}
}

// A HEAD is authorized as the GET it stands for.
func TestHeadNeedsWhatGetNeeds(t *testing.T) {
	t.Parallel()
	h, _ := newScopeServer(t, api.Options{})
	for token, want := range map[string]int{"read-shop": 200, "deploy-shop": 403, "": 401} {
		if rec := call(h, "HEAD", "/api/v1/projects/shop", nil, bearer(token)); rec.Code != want {
			t.Errorf("HEAD /api/v1/projects/shop with %q: %d; want %d", token, rec.Code, want)
		}
	}
}

// Unknown or missing runs, listeners and dead letters are 404 for a
// scoped token too: the scope check needs their project first.
func TestScopedTokensGet404ForUnknownThings(t *testing.T) {
	t.Parallel()
	h, _ := newScopeServer(t, api.Options{})
	for _, e := range []endpoint{
		{method: "GET", path: "/api/v1/runs/nope"},
		{method: "PUT", path: "/api/v1/listeners/shop%2Fnope/state", body: `{"enabled": true}`},
		{method: "POST", path: "/api/v1/deadletters/nope/replay"},
	} {
		if rec := call(h, e.method, e.path, []byte(e.body), bearer("all-s")); rec.Code != http.StatusNotFound {
			t.Errorf("%s with all-s: %d %s; want 404", e, rec.Code, rec.Body)
		}
	}
}

// With a backend that cannot read a dead letter by id, only run:* (or
// admin) may replay: the project is not known.
func TestReplayWithoutDeadLetterReaderNeedsRunStar(t *testing.T) {
	t.Parallel()
	b := struct{ api.Backend }{&scopeBackend{}} // hides DeadLetter
	star, _ := api.ParseScope("run:*")
	shop, _ := api.ParseScope("run:shop")
	h := api.New(b, api.Options{Tokens: []api.Token{api.NewToken("star", star), api.NewToken("shop", shop)}})
	if rec := call(h, "POST", "/api/v1/deadletters/dl-shop/replay", nil, bearer("star")); rec.Code != http.StatusAccepted {
		t.Errorf("replay with run:*: %d %s", rec.Code, rec.Body)
	}
	rec := call(h, "POST", "/api/v1/deadletters/dl-shop/replay", nil, bearer("shop"))
	if e := decodeError(t, rec); rec.Code != http.StatusForbidden || e.Error.Message != "this token lacks the scope run:*" {
		t.Errorf("replay with run:shop: %d %s; want 403 naming run:*", rec.Code, rec.Body)
	}
}

// /metrics is open without a metrics token; with one it needs that token
// or an admin token: 401 without a valid token, 403 with a scoped one.
func TestMetricsToken(t *testing.T) {
	t.Parallel()
	open, _ := newScopeServer(t, api.Options{})
	if rec := call(open, "GET", "/metrics", nil, nil); rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics without a metrics token configured: %d", rec.Code)
	}
	h, _ := newScopeServer(t, api.Options{MetricsToken: "scrape"})
	for token, want := range map[string]int{"scrape": 200, "admin": 200, "read-shop": 403, "": 401, "scrap": 401} {
		rec := call(h, "GET", "/metrics", nil, bearer(token))
		if rec.Code != want {
			t.Errorf("GET /metrics with %q: %d %s; want %d", token, rec.Code, rec.Body, want)
		}
		if want == 200 && !strings.Contains(rec.Body.String(), "opsrunner_up 1") {
			t.Errorf("GET /metrics with %q: %s", token, rec.Body)
		}
	}
	// The metrics token is not an API token.
	if rec := call(h, "GET", "/api/v1/projects", nil, bearer("scrape")); rec.Code != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/projects with the metrics token: %d; want 401", rec.Code)
	}
	// A metrics token alone, with no API tokens: /api/v1 stays open.
	only := api.New(&scopeBackend{}, api.Options{MetricsToken: "scrape"})
	if rec := call(only, "GET", "/metrics", nil, nil); rec.Code != http.StatusUnauthorized {
		t.Errorf("GET /metrics without a token, metrics token alone: %d; want 401", rec.Code)
	}
}
