package api

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// Options configure the HTTP layer. Zero values mean the documented defaults.
type Options struct {
	// Tokens, when non-empty, are the bearer tokens /api/v1 calls need,
	// each with the scopes it holds; empty leaves /api/v1 open.
	Tokens []Token
	// MetricsToken, when set, is a bearer token GET /metrics needs (an
	// admin token does too); empty leaves /metrics open.
	MetricsToken string
	// PeerTLS, when set, makes webhooks proxied to another agent go over
	// HTTPS (agents serving TLS): each connection to a peer uses the
	// client configuration it returns for the peer's host; nil proxies
	// over plain HTTP.
	PeerTLS func(host string) *tls.Config
	// MaxBodyBytes bounds webhook bodies; 0 means 1 MiB.
	MaxBodyBytes int64
	// Bundle limits for deploys.
	Bundle scripts.Limits
	// Getenv reads webhook secrets; nil means os.Getenv.
	Getenv func(string) string
	Logger *slog.Logger
	// Console, when set, serves the web console: GET (and HEAD) on / and
	// /console/... reach it without a token (the page asks for one and
	// sends it on its own API calls); nil leaves / unanswered (404).
	Console http.Handler
}

// New returns the echo handler serving the whole HTTP surface.
func New(b Backend, opts Options) http.Handler {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	if opts.Bundle.MaxBundleBytes <= 0 {
		opts.Bundle.MaxBundleBytes = 10 << 20
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &server{b: b, opts: opts, needs: map[string]need{}, proxy: newProxy(opts.PeerTLS)}
	// No catch-all 404 routes (ours or the ones a group with middleware
	// adds): the router answers a path it knows under another method with
	// 405, which a catch-all would turn into 404. HEAD is answered as GET
	// without the body (every GET handler here only reads).
	e := echo.NewWithConfig(echo.Config{
		Logger:           opts.Logger,
		HTTPErrorHandler: errorHandler,
		Router: echo.NewRouter(echo.RouterConfig{
			NotFoundHandler:         routeNotFound,
			MethodNotAllowedHandler: methodNotAllowed,
			AutoHandleHEAD:          true,
		}),
		NoGroupAutoRegister404Routes: true,
	})

	e.GET("/healthz", func(c *echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", s.ready)
	e.GET("/metrics", func(c *echo.Context) error { b.Metrics().ServeHTTP(c.Response(), c.Request()); return nil }, s.metricsAuth)
	e.POST("/hooks/:project/:path", s.webhook)
	if opts.Console != nil {
		page := echo.WrapHandler(opts.Console)
		e.GET("/", page)
		e.GET("/console", page)
		e.GET("/console/*", page)
	}

	v1 := e.Group("/api/v1", s.auth)
	for _, r := range s.routes() {
		v1.Add(r.method, r.path, r.handler)
		s.needs[r.method+" /api/v1"+r.path] = r.need
	}
	return e
}

type server struct {
	b    Backend
	opts Options
	// needs maps "METHOD /api/v1/path" to what a token needs to call it.
	needs map[string]need
	proxy peerProxy
}

// route is one /api/v1 endpoint and what a token needs to call it.
type route struct {
	method, path string
	handler      echo.HandlerFunc
	need         need
}

// routes is the management API. Each route says which scope a token needs
// (see Scope): deploy on the project for what changes it, run for what
// starts a run, read for what reads it; lists need read on some project and
// show only the projects the token reads; admin does everything.
func (s *server) routes() []route {
	get, put, post, del := http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete
	return []route{
		{put, "/projects/:project", s.deploy, needs(ActionDeploy, pathProject)},
		{get, "/projects", s.projects, readsAList},
		{get, "/projects/:project", s.project, needs(ActionRead, pathProject)},
		{del, "/projects/:project", s.deleteProject, needs(ActionDeploy, pathProject)},
		{post, "/projects/:project/rollback", s.rollback, needs(ActionDeploy, pathProject)},
		{put, "/projects/:project/secrets/:name", s.putSecret, needs(ActionDeploy, pathProject)},
		{get, "/projects/:project/secrets", s.listSecrets, needs(ActionRead, pathProject)},
		{del, "/projects/:project/secrets/:name", s.deleteSecret, needs(ActionDeploy, pathProject)},
		{put, "/projects/:project/operations/:operation", s.replaceScript, needs(ActionDeploy, pathProject)},
		{get, "/listeners", s.listeners, readsAList},
		{put, "/listeners/:id/state", s.listenerState, needs(ActionDeploy, listenerProject)},
		{put, "/listeners/:id/operations/:operation/state", s.bindingState, needs(ActionDeploy, listenerProject)},
		{get, "/schedules", s.schedules, readsAList},
		{put, "/schedules/:id/state", s.scheduleState, needs(ActionDeploy, scheduleProject)},
		{post, "/schedules/:id/run", s.runSchedule, needs(ActionRun, scheduleProject)},
		{get, "/runs", s.runs, need{action: ActionRead, project: queryProject, list: true}},
		{get, "/runs/:id", s.run, needs(ActionRead, runProject)},
		{get, "/deadletters", s.deadLetters, readsAList},
		{get, "/deadletters/:id", s.deadLetter, needs(ActionRead, deadLetterProject)},
		{del, "/deadletters/:id", s.deleteDeadLetter, needs(ActionDeploy, deadLetterProject)},
		{post, "/deadletters/:id/replay", s.replay, needs(ActionRun, deadLetterProject)},
		{get, "/cluster/members", s.members, anyToken},
		{get, "/openapi.json", s.openAPI, open},
		{get, "/info", s.info, anyToken},
		{get, "/broker/destinations", s.brokerDestinations, adminOnly},
	}
}

// routeNotFound answers a path no route has, under any method.
func routeNotFound(c *echo.Context) error {
	r := c.Request()
	return newError(http.StatusNotFound, CodeNotFound, "no route for "+r.Method+" "+r.URL.Path, nil)
}

// methodNotAllowed answers a path some route has, but not under the
// request's method: 405 with Allow listing the methods it takes.
func methodNotAllowed(c *echo.Context) error {
	r := c.Request()
	allow, _ := c.Get(echo.ContextKeyHeaderAllow).(string)
	if allow != "" {
		c.Response().Header().Set(echo.HeaderAllow, allow)
	}
	return newError(http.StatusMethodNotAllowed, CodeMethodNotAllowed,
		fmt.Sprintf("%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow), nil)
}

func (s *server) ready(c *echo.Context) error {
	if err := s.b.Ready(c.Request().Context()); err != nil {
		return c.JSON(http.StatusServiceUnavailable, map[string]any{"error": newError(http.StatusServiceUnavailable, CodeUnavailable, err.Error(), nil)})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

// ID parameters may hold escaped slashes ("orders%2Forders-in").
func param(c *echo.Context, name string) string {
	v := c.Param(name)
	if u, err := url.PathUnescape(v); err == nil {
		return u
	}
	return v
}

// deploy serves PUT /api/v1/projects/{project}. The name is checked first:
// a name the rule refuses is a 400 whatever the body.
func (s *server) deploy(c *echo.Context) error {
	r := c.Request()
	project := param(c, "project")
	if err := scripts.ValidProjectName(project); err != nil {
		return newError(http.StatusBadRequest, CodeInvalidProjectName, err.Error(), nil)
	}
	body := http.MaxBytesReader(c.Response(), r.Body, s.opts.Bundle.MaxBundleBytes)
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var files map[string][]byte
	var err error
	switch mt {
	case "application/gzip", "application/x-gzip", "application/x-tar+gzip", "application/x-gtar", "application/octet-stream":
		files, err = scripts.ReadBundle(body, s.opts.Bundle)
	case "multipart/form-data":
		files, err = readMultipart(body, params["boundary"], s.opts.Bundle)
	default:
		return newError(http.StatusUnsupportedMediaType, CodeUnsupportedType,
			fmt.Sprintf("deploy takes a gzipped tar (Content-Type: application/gzip) or multipart/form-data, not %q", r.Header.Get("Content-Type")), nil)
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return newError(http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("bundle larger than %d bytes", mbe.Limit), nil)
		}
		return err // classified by asAPIError: located deploy problems are 400s
	}
	v, err := s.b.Deploy(r.Context(), project, files)
	if err != nil {
		return err // classified by asAPIError: located deploy problems are 400s
	}
	return c.JSON(http.StatusCreated, v)
}

// readMultipart reads every file part of a multipart upload as a bundle file,
// named by the part's file name (which may contain folders).
func readMultipart(r io.Reader, boundary string, lim scripts.Limits) (map[string][]byte, error) {
	if boundary == "" {
		return nil, newError(http.StatusBadRequest, CodeInvalidProject, "multipart upload without boundary", nil)
	}
	mr := multipart.NewReader(r, boundary)
	files := map[string][]byte{}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, multipartError("read multipart", err)
		}
		name := part.FileName()
		if name == "" {
			name = part.FormName()
		}
		data, err := io.ReadAll(part)
		if err != nil {
			return nil, multipartError("read multipart part "+name, err)
		}
		if strings.HasSuffix(name, ".tar.gz") || strings.HasSuffix(name, ".tgz") {
			return scripts.ReadBundle(bytes.NewReader(data), lim)
		}
		files[name] = data
	}
	// Re-validate names and sizes through the bundle reader's rules.
	var buf bytes.Buffer
	if err := scripts.WriteBundle(&buf, files); err != nil {
		return nil, err
	}
	return scripts.ReadBundle(&buf, lim)
}

// multipartError keeps a body-limit error (413) and makes others a 400.
func multipartError(doing string, err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return err
	}
	return newError(http.StatusBadRequest, CodeInvalidProject, doing+": "+err.Error(), nil)
}

func (s *server) projects(c *echo.Context) error {
	ps, err := s.b.Projects(c.Request().Context())
	if err != nil {
		return err
	}
	ps = filterReadable(c, ps, func(p store.ProjectInfo) string { return p.Name })
	if ps == nil {
		ps = []store.ProjectInfo{}
	}
	return c.JSON(http.StatusOK, map[string]any{"projects": ps})
}

// projectView is GET /api/v1/projects/{project}'s answer: the project
// with its versions and, when the backend knows them, the live version's
// operations with their triggers.
type projectView struct {
	store.ProjectInfo
	Operations []OperationView `json:"operations,omitempty"`
}

func (s *server) project(c *echo.Context) error {
	name := param(c, "project")
	ps, err := s.b.Projects(c.Request().Context())
	if err != nil {
		return err
	}
	for _, p := range ps {
		if p.Name != name {
			continue
		}
		v := projectView{ProjectInfo: p}
		if r, ok := s.b.(OperationsReader); ok {
			v.Operations, _ = r.ProjectOperations(name)
		}
		return c.JSON(http.StatusOK, v)
	}
	return newError(http.StatusNotFound, CodeNotFound, "no project "+strconv.Quote(name), nil)
}

func (s *server) rollback(c *echo.Context) error {
	var req struct {
		Version int `json:"version"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Version <= 0 {
		return newError(http.StatusBadRequest, CodeBadRequest, `body must be {"version": N} with N ≥ 1`, nil)
	}
	v, err := s.b.Rollback(c.Request().Context(), param(c, "project"), req.Version)
	if err != nil {
		return err // classified by asAPIError: located deploy problems are 400s
	}
	return c.JSON(http.StatusOK, v)
}

func (s *server) replaceScript(c *echo.Context) error {
	src, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, s.opts.Bundle.MaxBundleBytes))
	if err != nil {
		return err
	}
	v, err := s.b.ReplaceScript(c.Request().Context(), param(c, "project"), param(c, "operation"), src)
	if err != nil {
		return err // classified by asAPIError: located deploy problems are 400s
	}
	return c.JSON(http.StatusCreated, v)
}

func (s *server) listeners(c *echo.Context) error {
	ls, err := s.b.Listeners(c.Request().Context(), c.QueryParam("q"))
	if err != nil {
		return err
	}
	ls = filterReadable(c, ls, func(l ListenerView) string { return l.Project })
	if ls == nil {
		ls = []ListenerView{}
	}
	return c.JSON(http.StatusOK, map[string]any{"listeners": ls})
}

type stateRequest struct {
	Enabled *bool `json:"enabled"`
}

func (s *server) readState(c *echo.Context) (bool, error) {
	var req stateRequest
	if err := decodeJSON(c, &req); err != nil {
		return false, err
	}
	if req.Enabled == nil {
		return false, newError(http.StatusBadRequest, CodeBadRequest, `body must be {"enabled": true|false}`, nil)
	}
	return *req.Enabled, nil
}

func (s *server) listenerState(c *echo.Context) error {
	on, err := s.readState(c)
	if err != nil {
		return err
	}
	id := param(c, "id")
	if err := s.b.SetListenerState(c.Request().Context(), id, on); err != nil {
		return err
	}
	return s.listenerByID(c, id)
}

func (s *server) bindingState(c *echo.Context) error {
	on, err := s.readState(c)
	if err != nil {
		return err
	}
	id := param(c, "id")
	if err := s.b.SetBindingState(c.Request().Context(), id, param(c, "operation"), on); err != nil {
		return err
	}
	return s.listenerByID(c, id)
}

func (s *server) listenerByID(c *echo.Context, id string) error {
	ls, err := s.b.Listeners(c.Request().Context(), "")
	if err != nil {
		return err
	}
	for _, l := range ls {
		if l.ID == id {
			return c.JSON(http.StatusOK, l)
		}
	}
	return newError(http.StatusNotFound, CodeNotFound, "no listener "+strconv.Quote(id), nil)
}

func (s *server) runs(c *echo.Context) error {
	f, err := runFilter(c)
	if err != nil {
		return err
	}
	runs, err := s.b.Runs(c.Request().Context(), f)
	if err != nil {
		return err
	}
	out := map[string]any{}
	limit := f.Limit
	if limit == 0 {
		limit = 100
	}
	if len(runs) == limit {
		// The page goes on after the last run the store read, shown or not:
		// a token that reads some projects gets shorter pages, not gaps.
		out["next"] = runs[len(runs)-1].ID
	}
	runs = filterReadable(c, runs, func(r store.Run) string { return r.Project })
	if runs == nil {
		runs = []store.Run{}
	}
	out["runs"] = runs
	return c.JSON(http.StatusOK, out)
}

// runFilter reads GET /api/v1/runs's query: project, operation, status,
// messageId, outcome, trigger, schedule, since, before and limit. A bad since, limit or
// outcome is a 400 *Error.
func runFilter(c *echo.Context) (store.RunFilter, error) {
	f := store.RunFilter{
		Project:   c.QueryParam("project"),
		Operation: c.QueryParam("operation"),
		Status:    c.QueryParam("status"),
		MessageID: c.QueryParam("messageId"),
		Outcome:   c.QueryParam("outcome"),
		Trigger:   c.QueryParam("trigger"),
		Schedule:  c.QueryParam("schedule"),
		Before:    c.QueryParam("before"),
	}
	if f.Outcome != "" && !slices.Contains(store.Outcomes(), f.Outcome) {
		return f, newError(http.StatusBadRequest, CodeBadRequest,
			"outcome must be one of "+strings.Join(store.Outcomes(), ", "),
			map[string]any{"parameter": "outcome", "value": f.Outcome, "valid": store.Outcomes()})
	}
	if v := c.QueryParam("since"); v != "" {
		t, err := parseSince(v)
		if err != nil {
			return f, newError(http.StatusBadRequest, CodeBadRequest, "since: "+err.Error(), nil)
		}
		f.Since = t
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return f, newError(http.StatusBadRequest, CodeBadRequest, "limit must be 1..1000", nil)
		}
		f.Limit = n
	}
	return f, nil
}

// parseSince accepts RFC 3339 times and Go durations ("15m" = 15 minutes ago).
func parseSince(v string) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		return time.Now().Add(-d), nil
	}
	return time.Parse(time.RFC3339, v)
}

func (s *server) run(c *echo.Context) error {
	r, err := s.b.Run(c.Request().Context(), param(c, "id"))
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return newError(http.StatusNotFound, CodeNotFound, "no run "+strconv.Quote(param(c, "id")), nil)
		}
		return err
	}
	return c.JSON(http.StatusOK, r)
}

func (s *server) deadLetters(c *echo.Context) error {
	f := store.DeadLetterFilter{Listener: c.QueryParam("listener")}
	dls, err := s.b.DeadLetters(c.Request().Context(), f)
	if err != nil {
		return err
	}
	dls = filterReadable(c, dls, func(d store.DeadLetter) string { return d.Project })
	if dls == nil {
		dls = []store.DeadLetter{}
	}
	return c.JSON(http.StatusOK, map[string]any{"deadLetters": dls})
}

func (s *server) replay(c *echo.Context) error {
	id := param(c, "id")
	if err := s.b.ReplayDeadLetter(c.Request().Context(), id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return newError(http.StatusNotFound, CodeNotFound, "no dead letter "+strconv.Quote(id), nil)
		}
		return err
	}
	return c.JSON(http.StatusAccepted, map[string]string{"status": "replayed", "id": id})
}

func (s *server) members(c *echo.Context) error {
	m, err := s.b.Members(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, m)
}

// decodeJSON reads a small JSON body strictly.
func decodeJSON(c *echo.Context, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, 64<<10))
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return newError(http.StatusBadRequest, CodeBadRequest, "request body is empty; JSON expected", nil)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return newError(http.StatusBadRequest, CodeBadRequest, "invalid JSON body: "+err.Error(), nil)
	}
	return nil
}
