package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v5"
	"github.com/opsrunner/opsrunner/internal/glob"
	"github.com/opsrunner/opsrunner/store"
)

// Scope is one permission of an API token: ScopeAdmin, or an action and a
// project pattern, "deploy:<glob>", "run:<glob>" or "read:<glob>", where
// the glob's "*" matches any characters of a project name ("read:shop",
// "deploy:team-*", "run:*"). Build one with ParseScope.
type Scope string

// The scope actions.
const (
	// ScopeAdmin may do everything.
	ScopeAdmin Scope = "admin"
	// ActionDeploy changes what runs: deploys, rollbacks, scripts,
	// listener and binding states, secrets.
	ActionDeploy = "deploy"
	// ActionRun starts runs: dead-letter replays.
	ActionRun = "run"
	// ActionRead reads: projects, runs, listeners, dead letters, secret names.
	ActionRead = "read"
)

// ParseScope reads a scope as the configuration writes it. An unknown
// action, a missing, empty or malformed pattern is an error saying which.
func ParseScope(s string) (Scope, error) {
	if s == string(ScopeAdmin) {
		return ScopeAdmin, nil
	}
	action, pattern, ok := strings.Cut(s, ":")
	switch action {
	case ActionDeploy, ActionRun, ActionRead:
	case string(ScopeAdmin):
		return "", fmt.Errorf("scope %q: admin takes no project pattern", s)
	default:
		return "", fmt.Errorf("scope %q: must be admin, deploy:<project glob>, run:<project glob> or read:<project glob>", s)
	}
	if !ok || pattern == "" {
		return "", fmt.Errorf("scope %q: %s needs a project pattern, e.g. %s:* for every project", s, action, action)
	}
	for _, r := range pattern {
		if r != '*' && !projectNameRune(r) {
			return "", fmt.Errorf("scope %q: project pattern may hold lowercase letters, digits, '-', '_', '.' and '*', not %q", s, r)
		}
	}
	if len(pattern) > 255 {
		return "", fmt.Errorf("scope %q: project pattern longer than 255 characters", s)
	}
	return Scope(s), nil
}

// projectNameRune reports whether r may appear in a project name.
func projectNameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
}

// allows reports whether s lets its token do action on project.
func (s Scope) allows(action, project string) bool {
	if s == ScopeAdmin {
		return true
	}
	a, pattern, _ := strings.Cut(string(s), ":")
	return a == action && glob.Match(pattern, project)
}

// Token is a bearer token the API accepts: the SHA-256 digest of its value
// (the value itself need not be known) and what it may do.
type Token struct {
	SHA256 [sha256.Size]byte
	Scopes []Scope
}

// NewToken returns the token whose value is value, with scopes.
func NewToken(value string, scopes ...Scope) Token {
	return Token{SHA256: sha256.Sum256([]byte(value)), Scopes: scopes}
}

// grant is what the caller of a request may do: the scopes of its token.
type grant []Scope

// allGrant is the grant of every request when no tokens are configured.
var allGrant = grant{ScopeAdmin}

// allows reports whether g may do action on project.
func (g grant) allows(action, project string) bool {
	for _, s := range g {
		if s.allows(action, project) {
			return true
		}
	}
	return false
}

// allowsAll reports whether g may do action on every project (admin, or
// action:*), so that the project need not be looked up.
func (g grant) allowsAll(action string) bool {
	for _, s := range g {
		if s == ScopeAdmin || string(s) == action+":*" {
			return true
		}
	}
	return false
}

// allowsAny reports whether g may do action on some project.
func (g grant) allowsAny(action string) bool {
	for _, s := range g {
		if a, _, _ := strings.Cut(string(s), ":"); s == ScopeAdmin || a == action {
			return true
		}
	}
	return false
}

// need is what a token must hold to call a route: action on the project
// the request acts on. An empty action lets any valid token in. A list
// that names no project needs action on some project; its handler filters
// it to the projects the token may read. An open route needs no token at
// all.
type need struct {
	action  string
	project projectOf // nil: the request names no project
	list    bool
	open    bool
}

// projectOf finds the project a request acts on; "" when it cannot say
// (then only a scope on every project will do, or any for a list). It
// answers an *Error (404) when the thing the request names does not exist.
type projectOf func(s *server, c *echo.Context) (string, error)

var (
	anyToken   = need{}
	adminOnly  = need{action: string(ScopeAdmin)}
	readsAList = need{action: ActionRead, list: true}
	// open is the need of GET /api/v1/openapi.json: the API's description
	// holds no project's data and is the repository's own file, and the
	// tools that read it (generators, API browsers) read it before they
	// have a token.
	open = need{open: true}
)

func needs(action string, project projectOf) need { return need{action: action, project: project} }

// queryProject is the ?project= of a list, "" without one.
func queryProject(_ *server, c *echo.Context) (string, error) { return c.QueryParam("project"), nil }

// pathProject is the {project} of the path.
func pathProject(_ *server, c *echo.Context) (string, error) { return param(c, "project"), nil }

// runProject is the project of the run {id}.
func runProject(s *server, c *echo.Context) (string, error) {
	r, err := s.b.Run(c.Request().Context(), param(c, "id"))
	if errors.Is(err, store.ErrNotFound) {
		return "", newError(http.StatusNotFound, CodeNotFound, "no run "+strconv.Quote(param(c, "id")), nil)
	}
	return r.Project, err
}

// listenerProject is the project of the listener {id}.
func listenerProject(s *server, c *echo.Context) (string, error) {
	id := param(c, "id")
	ls, err := s.b.Listeners(c.Request().Context(), "")
	if err != nil {
		return "", err
	}
	for _, l := range ls {
		if l.ID == id {
			return l.Project, nil
		}
	}
	return "", newError(http.StatusNotFound, CodeNotFound, "no listener "+strconv.Quote(id), nil)
}

// DeadLetterReader reads one dead letter. A Backend that is one lets a
// token scoped to some projects replay their dead letters; with any other
// Backend a replay needs run:* (the project is not known).
type DeadLetterReader interface {
	DeadLetter(ctx context.Context, id string) (store.DeadLetter, error)
}

// deadLetterProject is the project of the dead letter {id}; "" when the
// backend cannot say.
func deadLetterProject(s *server, c *echo.Context) (string, error) {
	r, ok := s.b.(DeadLetterReader)
	if !ok {
		return "", nil
	}
	dl, err := r.DeadLetter(c.Request().Context(), param(c, "id"))
	if errors.Is(err, store.ErrNotFound) {
		return "", newError(http.StatusNotFound, CodeNotFound, "no dead letter "+strconv.Quote(param(c, "id")), nil)
	}
	return dl.Project, err
}

// grantKey is where auth keeps the request's grant in the echo context.
const grantKey = "opsrunner.grant"

// grantOf is the grant auth found for the request.
func grantOf(c *echo.Context) grant {
	if g, ok := c.Get(grantKey).(grant); ok {
		return g
	}
	return nil
}

// authenticate returns the grant of the request's bearer token; ok is
// false when it has none or an unknown one. Every configured token is
// compared, in constant time, with the digest of the one presented, so
// neither the tokens' lengths nor which one matched show in the timing.
func authenticate(r *http.Request, tokens []Token) (g grant, ok bool) {
	h := r.Header.Get("Authorization")
	const scheme = "bearer " // the scheme is case-insensitive (RFC 9110)
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return nil, false
	}
	got := h[len(scheme):]
	sum := sha256.Sum256([]byte(got))
	for _, t := range tokens {
		if subtle.ConstantTimeCompare(sum[:], t.SHA256[:]) == 1 && !ok {
			g, ok = t.Scopes, true
		}
	}
	return g, ok
}

// unauthorized answers a request without a valid token: 401.
func unauthorized(c *echo.Context) error {
	c.Response().Header().Set("WWW-Authenticate", "Bearer")
	return newError(http.StatusUnauthorized, CodeUnauthorized, "a valid bearer token is required", nil)
}

// CodeForbidden: the token is valid but lacks the scope the call needs
// (403); the details' scope names it.
const CodeForbidden = "forbidden"

// forbidden answers a token without scope: 403 naming it.
func forbidden(scope string) error {
	return newError(http.StatusForbidden, CodeForbidden, "this token lacks the scope "+scope, map[string]any{"scope": scope})
}

// auth guards /api/v1: with tokens configured, a request needs a valid
// bearer token (401) holding what its route needs (403), unless its route
// is open. The route's need comes from the route table; a route missing
// from it needs admin.
func (s *server) auth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		if len(s.opts.Tokens) == 0 {
			c.Set(grantKey, allGrant)
			return next(c)
		}
		if s.routeNeed(c).open {
			return next(c) // no grant: the handler reads nothing of a project
		}
		g, ok := authenticate(c.Request(), s.opts.Tokens)
		if !ok {
			return unauthorized(c)
		}
		c.Set(grantKey, g)
		if err := s.authorize(c, g); err != nil {
			return err
		}
		return next(c)
	}
}

// routeNeed is the need of the request's route in the route table; a
// route missing from it needs admin.
func (s *server) routeNeed(c *echo.Context) need {
	ri := c.RouteInfo()
	n, ok := s.needs[ri.Method+" "+ri.Path]
	if !ok && ri.Method == http.MethodHead {
		n, ok = s.needs[http.MethodGet+" "+ri.Path]
	}
	if !ok {
		return adminOnly
	}
	return n
}

// authorize checks g against the need of the request's route.
func (s *server) authorize(c *echo.Context, g grant) error {
	n := s.routeNeed(c)
	switch {
	case n.action == "" || g.allowsAll(n.action):
		return nil
	case n.action == string(ScopeAdmin):
		return forbidden(string(ScopeAdmin))
	}
	var project string
	if n.project != nil {
		var err error
		if project, err = n.project(s, c); err != nil {
			return err
		}
	}
	switch {
	case project != "":
		if g.allows(n.action, project) {
			return nil
		}
		return forbidden(n.action + ":" + project)
	case n.list && g.allowsAny(n.action):
		return nil
	}
	return forbidden(n.action + ":*")
}

// readable reports whether the request's token may read project (lists
// keep only the items of such projects).
func readable(c *echo.Context, project string) bool {
	return grantOf(c).allows(ActionRead, project)
}

// filterReadable keeps the items of list whose project the request's
// token may read.
func filterReadable[T any](c *echo.Context, list []T, project func(T) string) []T {
	if grantOf(c).allowsAll(ActionRead) {
		return list
	}
	out := list[:0:0]
	for _, x := range list {
		if readable(c, project(x)) {
			out = append(out, x)
		}
	}
	return out
}

// metricsAuth guards GET /metrics when a metrics token is configured: it
// or an admin token is needed (401 without a valid token, 403 with an API
// token that is not admin).
func (s *server) metricsAuth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		if s.opts.MetricsToken == "" {
			return next(c)
		}
		if _, ok := authenticate(c.Request(), []Token{NewToken(s.opts.MetricsToken)}); ok {
			return next(c)
		}
		g, ok := authenticate(c.Request(), s.opts.Tokens)
		switch {
		case !ok:
			return unauthorized(c)
		case !g.allowsAll(string(ScopeAdmin)):
			return forbidden(string(ScopeAdmin) + " (or the metrics token)")
		}
		return next(c)
	}
}
