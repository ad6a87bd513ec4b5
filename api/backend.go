// Package api serves opsrunner over HTTP with echo v5: the management REST
// API (/api/v1), webhook endpoints (/hooks), health and metrics. It holds no
// state of its own: everything goes through a Backend.
package api

import (
	"context"
	"net/http"
	"time"

	"github.com/opsrunner/opsrunner/cluster"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
	"github.com/opsrunner/opsrunner/triggers"
)

// Backend is what the HTTP layer needs from an agent. Methods are
// goroutine-safe and honour ctx.
type Backend interface {
	// Deploy validates and stores a new version of a project from its files.
	Deploy(ctx context.Context, project string, files map[string][]byte) (store.ProjectVersion, error)
	// ReplaceScript stores a new version with one operation's script replaced.
	ReplaceScript(ctx context.Context, project, operation string, src []byte) (store.ProjectVersion, error)
	// Rollback makes an earlier version live again (as a new version).
	Rollback(ctx context.Context, project string, version int) (store.ProjectVersion, error)
	Projects(ctx context.Context) ([]store.ProjectInfo, error)

	// Webhook finds the live operation behind /hooks/{project}/{path}.
	Webhook(project, path string) (*scripts.Project, *scripts.Operation, error)
	// ProxyTarget names a markedly less loaded agent (host:port) that should
	// serve a webhook this agent is too busy for; "" serves it locally.
	ProxyTarget() string
	// Invoke runs a webhook-triggered chain. With Async it returns as soon as
	// the run is queued. The returned run is final unless Async.
	Invoke(ctx context.Context, inv Invocation) (store.Run, *triggers.Response, error)

	Runs(ctx context.Context, f store.RunFilter) ([]store.Run, error)
	Run(ctx context.Context, id string) (store.Run, error)

	Listeners(ctx context.Context, q string) ([]ListenerView, error)
	SetListenerState(ctx context.Context, id string, enabled bool) error
	SetBindingState(ctx context.Context, id, operation string, enabled bool) error

	DeadLetters(ctx context.Context, f store.DeadLetterFilter) ([]store.DeadLetter, error)
	ReplayDeadLetter(ctx context.Context, id string) error

	Members(ctx context.Context) (MembersView, error)
	// Ready returns nil when the agent takes work, else why not.
	Ready(ctx context.Context) error
	// Metrics serves the Prometheus exposition.
	Metrics() http.Handler

	SecretsBackend
	ManageBackend
	SchedulesBackend
}

// SecretsBackend keeps project secrets: the secrets endpoints write and
// list them, webhook signatures read them. A project need not be deployed
// to have secrets. Errors wrap secrets.ErrInvalid for a name or value the
// rules refuse and store.ErrNotFound for an unset secret.
type SecretsBackend interface {
	// PutSecret sets (or replaces) a project's secret.
	PutSecret(ctx context.Context, project, name string, value []byte) error
	// Secrets lists a project's secrets by name, never with values.
	Secrets(ctx context.Context, project string) ([]store.SecretInfo, error)
	// DeleteSecret deletes a project's secret.
	DeleteSecret(ctx context.Context, project, name string) error
	// Secret returns a project's secret in plain text; ok is false when
	// it is not set.
	Secret(ctx context.Context, project, name string) (value string, ok bool, err error)
}

// Invocation is a webhook call handed to the backend.
type Invocation struct {
	Project   *scripts.Project
	Operation *scripts.Operation
	Event     map[string]any
	Async     bool
	// IdempotencyKey, when set, makes repeats return the first run's answer.
	IdempotencyKey string
	// BodyDigest is the hex SHA-256 of the request body: a repeated
	// IdempotencyKey with another body is refused (422), not replayed.
	BodyDigest string
}

// ListenerView is the Contract's listener shape.
type ListenerView struct {
	ID          string        `json:"id"`
	Name        string        `json:"name"`
	Project     string        `json:"project"`
	Destination string        `json:"destination"`
	Connection  string        `json:"connection"`
	AckMode     string        `json:"ackMode"`
	Enabled     bool          `json:"enabled"`
	Status      string        `json:"status"`
	Operations  []BindingView `json:"operations"`

	// Backlog, InFlight and Consumers are the destination's counts on the
	// answering agent's embedded broker: messages waiting for a consumer,
	// delivered and not yet acknowledged, and subscriptions receiving (a
	// topic: its subscriptions' added up). nil (left out of the JSON) when
	// the listener's connection is another broker, whose counts the agent
	// does not know.
	Backlog   *int `json:"backlog,omitempty"`
	InFlight  *int `json:"inFlight,omitempty"`
	Consumers *int `json:"consumers,omitempty"`
}

// OperationsReader lists the operations of a project's live version with
// their triggers. GET /api/v1/projects/{project} adds them to its answer
// when the Backend is one.
type OperationsReader interface {
	// ProjectOperations returns the operations of the version of project
	// the agent has loaded, in manifest order; ok is false when it has
	// none loaded.
	ProjectOperations(project string) (ops []OperationView, ok bool)
}

// OperationView is one operation of a project's live version with what
// triggers it.
type OperationView struct {
	Name string `json:"name"`
	// Type is `script` or `acknowledge` (a built-in).
	Type string `json:"type,omitempty"`
	// Webhook is set when the operation has a webhook.
	Webhook *WebhookView `json:"webhook,omitempty"`
	// Listeners are the ids (project/listener) of the listeners feeding it.
	Listeners []string `json:"listeners"`
	// Schedules are the ids (project/schedule) of the schedules running
	// it; omitted when none.
	Schedules []string `json:"schedules,omitempty"`
	// Timeout is its time limit, as "30s"; empty for an acknowledgement,
	// which runs no script and has none.
	Timeout string `json:"timeout,omitempty"`
}

// WebhookView is an operation's webhook: its path segment and the URL
// path (relative to the agent) that calls it.
type WebhookView struct {
	Path string `json:"path"`
	// URL is /hooks/{project}/{path}.
	URL string `json:"url"`
}

// BindingView is one listener → operation binding.
type BindingView struct {
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
}

// MembersView is the Contract's members shape.
type MembersView struct {
	Leader          string           `json:"leader"`
	LeaderNodeState string           `json:"leaderNodeState"`
	Quorum          Quorum           `json:"quorum"`
	Members         []cluster.Member `json:"members"`
	Redis           string           `json:"redis,omitempty"`
	Time            time.Time        `json:"time"`
}

// Quorum says whether enough agents are live to listen.
type Quorum struct {
	Size     int  `json:"size"`
	Required int  `json:"required"`
	Live     int  `json:"live"`
	OK       bool `json:"ok"`
}
