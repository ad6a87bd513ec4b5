// Package store persists what an agent must remember: project versions,
// listener and binding states, run history, dead letters, idempotency
// keys and sealed project secrets. One interface, two implementations: bbolt for a single agent and
// Redis for a cluster.
package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrNotFound is returned by getters when the record does not exist.
var ErrNotFound = errors.New("not found")

// Store is everything an agent persists. Implementations are safe for
// concurrent use. Methods block on I/O except PutRun, which may buffer.
type Store interface {
	// SaveProjectVersion stores a new version of a project bundle and makes it
	// the active one. It returns the assigned version number (1, 2, ...).
	SaveProjectVersion(ctx context.Context, name string, bundle []byte, note string) (ProjectVersion, error)
	// ProjectVersion returns one stored version including its bundle.
	ProjectVersion(ctx context.Context, name string, version int) (ProjectVersion, []byte, error)
	// Projects lists every project with its versions (no bundles), by name.
	Projects(ctx context.Context) ([]ProjectInfo, error)
	// SetActiveVersion makes an existing version the live one (rollback).
	SetActiveVersion(ctx context.Context, name string, version int) error
	// DeleteProject deletes a project's versions and bundles and announces
	// a ChangeProject; an error wrapping ErrNotFound when it has none. Its
	// runs, dead letters, secrets and listener states are kept. A project
	// deployed again after it starts over at version 1.
	DeleteProject(ctx context.Context, name string) error

	// State returns a stored on/off state; ok is false when none was stored.
	State(ctx context.Context, key string) (enabled bool, ok bool, err error)
	// SetState stores an on/off state (listener or binding).
	SetState(ctx context.Context, key string, enabled bool) error

	// PutRun records a run (insert or replace by ID). It may buffer and write
	// in batches; Flush or Close makes buffered runs durable.
	PutRun(ctx context.Context, r Run) error
	// Run returns one run by ID, buffered or stored.
	Run(ctx context.Context, id string) (Run, error)
	// Runs lists runs newest first.
	Runs(ctx context.Context, f RunFilter) ([]Run, error)

	// PutDeadLetter stores a dead letter (insert or replace by ID).
	PutDeadLetter(ctx context.Context, d DeadLetter) error
	DeadLetter(ctx context.Context, id string) (DeadLetter, error)
	DeadLetters(ctx context.Context, f DeadLetterFilter) ([]DeadLetter, error)
	DeleteDeadLetter(ctx context.Context, id string) error

	// ClaimIdempotencyKey binds key to claim unless already bound; it returns
	// the claim the key is bound to and whether this call created the binding.
	ClaimIdempotencyKey(ctx context.Context, key string, claim Claim, ttl time.Duration) (bound Claim, created bool, err error)

	// Increment adds one to the counter under key and returns the new count.
	// A counter starts at zero and lapses ttl after its last increment. It
	// blocks until the count is durable.
	Increment(ctx context.Context, key string, ttl time.Duration) (int64, error)

	SecretStore

	// Sweep deletes runs and dead letters past their retention.
	Sweep(ctx context.Context, now time.Time) error
	// Flush makes buffered writes durable.
	Flush(ctx context.Context) error
	// Close flushes and releases the store. Idempotent.
	Close() error
}

// SecretStore keeps project secrets as the sealed (encrypted) bytes it is
// given: it never sees a secret in plain text (package secrets seals and
// opens them). Secrets are kept until deleted, never swept. Every method
// blocks until its read or write is done, and a write is durable when it
// returns; nothing is cached, so in a cluster every agent sees a change at
// once. Safe for concurrent use.
type SecretStore interface {
	// PutSecret stores (inserts or replaces) a project's sealed secret.
	PutSecret(ctx context.Context, project, name string, sealed []byte, updatedAt time.Time) error
	// Secret returns a sealed secret and when it was set; an error
	// wrapping ErrNotFound when it is not set.
	Secret(ctx context.Context, project, name string) (sealed []byte, updatedAt time.Time, err error)
	// Secrets lists a project's secrets by name (never their values); an
	// empty list when it has none.
	Secrets(ctx context.Context, project string) ([]SecretInfo, error)
	// DeleteSecret deletes a secret; an error wrapping ErrNotFound when it
	// is not set.
	DeleteSecret(ctx context.Context, project, name string) error
}

// SecretInfo names a stored secret: what listings show instead of values.
type SecretInfo struct {
	Name      string    `json:"name"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// packSecret is a stored secret: its update time (Unix nanoseconds, 8
// bytes big-endian) then the sealed bytes. Both stores keep this form.
func packSecret(sealed []byte, updatedAt time.Time) []byte {
	v := make([]byte, 8, 8+len(sealed))
	binary.BigEndian.PutUint64(v, uint64(updatedAt.UnixNano()))
	return append(v, sealed...)
}

// unpackSecret reads what packSecret wrote; sealed aliases v.
func unpackSecret(v []byte) (sealed []byte, updatedAt time.Time, err error) {
	if len(v) < 8 {
		return nil, time.Time{}, fmt.Errorf("corrupt stored secret: %d bytes", len(v))
	}
	return v[8:], time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC(), nil
}

// Claim is what an idempotency key is bound to: the run of the first
// request and the hex SHA-256 of its body (empty when the caller did not
// compute it), so that a repeat with another body can be told apart.
type Claim struct {
	RunID      string
	BodyDigest string
}

// Conflicts reports whether a repeat made with other (bound is the first
// request's claim) carried another body. An empty digest on either side
// is unknown, never a conflict.
func (bound Claim) Conflicts(other Claim) bool {
	return bound.BodyDigest != "" && other.BodyDigest != "" && bound.BodyDigest != other.BodyDigest
}

// ProjectVersion describes one stored version of a project.
type ProjectVersion struct {
	Project   string    `json:"project"`
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"createdAt"`
	Note      string    `json:"note,omitempty"`
	Size      int       `json:"size"`
}

// ProjectInfo is a project with its versions, oldest first.
type ProjectInfo struct {
	Name          string           `json:"name"`
	ActiveVersion int              `json:"activeVersion"`
	Versions      []ProjectVersion `json:"versions"`
}

// Run statuses.
const (
	StatusRunning   = "running"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusTimedOut  = "timed_out"
)

// Delivery outcomes recorded on runs triggered by a listener.
const (
	OutcomeCommitted        = "committed"
	OutcomeRolledBack       = "rolled_back"
	OutcomeDeadLettered     = "dead_lettered"
	OutcomeSkippedDuplicate = "skipped_duplicate"
	OutcomeRefused          = "refused"
)

// Outcomes returns every delivery outcome, in the order above: the values
// RunFilter.Outcome may take. Each call returns a new slice.
func Outcomes() []string {
	return []string{OutcomeCommitted, OutcomeRolledBack, OutcomeDeadLettered, OutcomeSkippedDuplicate, OutcomeRefused}
}

// Millis is d in milliseconds to the microsecond: a run's durationMs (a
// fast run takes well under a millisecond; whole milliseconds showed 0).
func Millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Run is one execution of an operation chain (the Contract's run shape).
type Run struct {
	ID          string     `json:"id"`
	Project     string     `json:"project"`
	Version     int        `json:"version,omitempty"`
	Operation   string     `json:"operation"`
	Trigger     string     `json:"trigger"`
	Status      string     `json:"status"`
	Error       string     `json:"error,omitempty"`
	StartedAt   time.Time  `json:"startedAt"`
	FinishedAt  *time.Time `json:"finishedAt,omitempty"`
	DurationMs  float64    `json:"durationMs"` // milliseconds, to the microsecond
	Agent       string     `json:"agent"`
	Listener    string     `json:"listener,omitempty"`
	MessageID   string     `json:"messageId,omitempty"`
	Attempt     int        `json:"attempt,omitempty"`
	Outcome     string     `json:"outcome,omitempty"`
	Chain       []Step     `json:"chain,omitempty"`
	Logs        []LogLine  `json:"logs"`
	HTTPStatus  int        `json:"httpStatus,omitempty"`
	ParentRunID string     `json:"parentRunId,omitempty"`
	// Schedule names the schedule (of Project) whose tick, or run-now,
	// started the run; ScheduledAt is the tick's time (absent for a run-now).
	Schedule    string     `json:"schedule,omitempty"`
	ScheduledAt *time.Time `json:"scheduledAt,omitempty"`
	// Input is the body the run was started with (a webhook's, a message's,
	// a schedule's input) as compact, HTML-escaped JSON (as json.Marshal
	// writes it; a text body as a JSON string) when it takes at most
	// MaxInputBytes; InputTruncated says it was longer and is not kept.
	Input          json.RawMessage `json:"input,omitempty"`
	InputTruncated bool            `json:"inputTruncated,omitempty"`

	// Result is what the script returned, as JSON (absent for undefined),
	// when it takes at most MaxResultBytes. The agent keeps it on the runs
	// whose caller may ask for it later: async and idempotent webhook runs
	// and RunOperation runs.
	Result json.RawMessage `json:"result,omitempty"`
	// ResultTruncated is true when the return value was longer than
	// MaxResultBytes: Result is then absent.
	ResultTruncated bool `json:"resultTruncated"`
	// FullResult is the whole return value when Result was cut and an
	// idempotent request may ask for its answer again; never in the API.
	FullResult []byte `json:"-"`
}

// MaxResultBytes bounds a run's Result.
const MaxResultBytes = 1 << 20

// MaxInputBytes bounds a run's Input.
const MaxInputBytes = 64 << 10

// Step is one operation executed within a run.
type Step struct {
	Operation  string  `json:"operation"`
	Status     string  `json:"status"`
	Error      string  `json:"error,omitempty"`
	DurationMs float64 `json:"durationMs"` // milliseconds, to the microsecond
}

// LogLine is one line a script logged.
type LogLine struct {
	Time    time.Time `json:"time"`
	Level   string    `json:"level"`
	Message string    `json:"message"`
}

// RunFilter selects runs; zero fields match everything. Limit zero means 100.
type RunFilter struct {
	Project   string
	Operation string
	Status    string
	MessageID string
	// Outcome is one of the Outcome* values (see Outcomes): only the runs
	// of deliveries settled that way.
	Outcome string
	// Trigger selects runs by what started them ("webhook", "listener",
	// "operation", "schedule").
	Trigger string
	// Schedule selects the runs of ticks (and run-nows) of schedules of
	// this name; combine it with Project for one schedule.
	Schedule string
	Since    time.Time
	// Before is a paging cursor: only runs with ID < Before.
	Before string
	Limit  int
}

// DeadLetter is a message that exhausted its redeliveries (Contract shape).
type DeadLetter struct {
	ID                    string            `json:"id"`
	Project               string            `json:"project"`
	Listener              string            `json:"listener"`
	MessageID             string            `json:"messageId"`
	Destination           string            `json:"destination"`
	DeadLetterDestination string            `json:"deadLetterDestination"`
	Attempts              int               `json:"attempts"`
	Error                 string            `json:"error"`
	FailedAt              time.Time         `json:"failedAt"`
	Body                  string            `json:"body"`
	Headers               map[string]string `json:"headers"`
	Agent                 string            `json:"agent,omitempty"`
	// ExpiresAt is when the record may be swept; zero keeps it forever.
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
}

// DeadLetterFilter selects dead letters; Limit zero means 100.
type DeadLetterFilter struct {
	Listener string
	Limit    int
}

// Retention bounds run history.
type Retention struct {
	// MaxRuns is the number of runs kept; zero means 10000.
	MaxRuns int
	// MaxAge is how long runs are kept; zero means 7 days.
	MaxAge time.Duration
}
