// Package scripts holds the project model: the manifest (opsrunner.yaml), its
// strict parsing and validation, bundles (gzipped tar uploads), compiled
// scripts and versions. It knows nothing of how operations run.
package scripts

import (
	"time"

	"github.com/dop251/goja"

	"github.com/opsrunner/opsrunner/egress"
)

// Manifest is the parsed opsrunner.yaml of a project. Its keys are the
// users' contract, each documented in docs/manifest.md (a test checks the
// table against these yaml tags); unknown keys are errors.
type Manifest struct {
	Project    string      `yaml:"project" json:"project"`
	Operations []Operation `yaml:"operations" json:"operations"`
	Listeners  []Listener  `yaml:"listeners,omitempty" json:"listeners,omitempty"`
	// Egress lists where the project's fetch may connect (egress.ParsePolicy
	// gives the forms of an entry); empty means nowhere.
	Egress []string `yaml:"egress,omitempty" json:"egress,omitempty"`
	// Env are settings scripts read as env.NAME: not secret (they are in
	// the bundle); secrets are set over the API instead.
	Env map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
	// Exports are the operations other projects may RunOperation; without
	// an export, only the project's own operations can call them.
	Exports []Export `yaml:"exports,omitempty" json:"exports,omitempty"`
	// Schedules run operations on a clock (see Schedule).
	Schedules []Schedule `yaml:"schedules,omitempty" json:"schedules,omitempty"`
}

// Export lets other projects call one of the project's operations with
// RunOperation("project/Operation").
type Export struct {
	// Operation names an operation of this project.
	Operation string `yaml:"operation" json:"operation"`
	// To lists the projects that may call it, by name; "*" stands for any
	// project.
	To []string `yaml:"to" json:"to"`
}

// Operation types.
const (
	TypeScript      = "script"
	TypeAcknowledge = "acknowledge"
)

// Acknowledge actions, as the seed spells them. Parsing is case-insensitive;
// parsed values are normalised to these spellings.
const (
	ActionCommit   = "JBXCommit"
	ActionRollback = "JBXRollback"
)

// Operation is one named unit of work. Name is free text, unique in the project.
type Operation struct {
	Name string `yaml:"name" json:"name"`
	// Type is TypeScript (default when empty) or TypeAcknowledge.
	Type string `yaml:"type,omitempty" json:"type,omitempty"`
	// Script is the bundle path of the JS file (TypeScript only).
	Script string `yaml:"script,omitempty" json:"script,omitempty"`
	// Action is ActionCommit or ActionRollback (TypeAcknowledge only).
	Action string `yaml:"action,omitempty" json:"action,omitempty"`
	// Timeout bounds one execution; zero means DefaultOperationTimeout.
	Timeout   Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	OnSuccess []string `yaml:"onSuccess,omitempty" json:"onSuccess,omitempty"`
	OnFailure []string `yaml:"onFailure,omitempty" json:"onFailure,omitempty"`
	Webhook   *Webhook `yaml:"webhook,omitempty" json:"webhook,omitempty"`
}

// DefaultOperationTimeout applies when an operation names no timeout.
const DefaultOperationTimeout = 30 * time.Second

// EffectiveTimeout is the operation's timeout or the default.
func (o *Operation) EffectiveTimeout() time.Duration {
	if o.Timeout <= 0 {
		return DefaultOperationTimeout
	}
	return time.Duration(o.Timeout)
}

// Webhook exposes an operation at POST /hooks/{project}/{path}.
type Webhook struct {
	// Path defaults to the operation name, URL-path-escaped.
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
	// SecretEnv names the HMAC key that signs requests: the project secret
	// of that name when it is set, else the agent's environment variable.
	SecretEnv string `yaml:"secretEnv,omitempty" json:"secretEnv,omitempty"`
	// TokenSecret names the project secret a request's
	// "Authorization: Bearer <token>" must equal; empty means no token is
	// required.
	TokenSecret string `yaml:"tokenSecret,omitempty" json:"tokenSecret,omitempty"`
}

// Listener ack modes.
const (
	AckOnSuccess = "onSuccess"
	AckExplicit  = "explicit"
	AckAuto      = "auto"
)

// Listener modes.
const (
	ModePerMessage = "perMessage"
	ModeBatch      = "batch"
)

// Fanout values for topic listeners.
const (
	FanoutOnce = "once"
	FanoutEach = "each"
)

// Listener is a subscription to one broker destination feeding operations.
type Listener struct {
	Name        string `yaml:"name" json:"name"`
	Destination string `yaml:"destination" json:"destination"`
	// Connection names an agent broker connection; empty means "default".
	Connection string `yaml:"connection,omitempty" json:"connection,omitempty"`
	// AckMode is AckOnSuccess (default when empty), AckExplicit or AckAuto.
	AckMode string `yaml:"ackMode,omitempty" json:"ackMode,omitempty"`
	// AckTimeout: zero means DefaultAckTimeout.
	AckTimeout Duration `yaml:"ackTimeout,omitempty" json:"ackTimeout,omitempty"`
	// Consumers is concurrent deliveries per agent; zero means 1.
	Consumers int `yaml:"consumers,omitempty" json:"consumers,omitempty"`
	// Prefetch zero means "free workers".
	Prefetch       int    `yaml:"prefetch,omitempty" json:"prefetch,omitempty"`
	Selector       string `yaml:"selector,omitempty" json:"selector,omitempty"`
	Durable        bool   `yaml:"durable,omitempty" json:"durable,omitempty"`
	SubscriberName string `yaml:"subscriberName,omitempty" json:"subscriberName,omitempty"`
	// Filter is the bundle path of an optional filter script; false refuses.
	Filter string `yaml:"filter,omitempty" json:"filter,omitempty"`
	// DedupHeader names a producer header used as dedup key instead of message-id.
	DedupHeader string     `yaml:"dedupHeader,omitempty" json:"dedupHeader,omitempty"`
	Operations  []string   `yaml:"operations" json:"operations"`
	Redelivery  Redelivery `yaml:"redelivery,omitempty" json:"redelivery,omitempty"`
	Placement   Placement  `yaml:"placement,omitempty" json:"placement,omitempty"`
	Fanout      string     `yaml:"fanout,omitempty" json:"fanout,omitempty"`
	Mode        string     `yaml:"mode,omitempty" json:"mode,omitempty"`
	// CallbackTimeout bounds a batch-mode run (CloverDX task.jms.callback.timeout).
	CallbackTimeout Duration `yaml:"callbackTimeout,omitempty" json:"callbackTimeout,omitempty"`
	// Enabled is the initial state at first deploy; nil means enabled.
	Enabled *bool `yaml:"enabled,omitempty" json:"enabled,omitempty"`
}

// DefaultAckTimeout applies when a listener names no ackTimeout.
const DefaultAckTimeout = 60 * time.Second

// Redelivery is opsrunner's own redelivery policy.
type Redelivery struct {
	// MaxRedeliveries is how many times a failed message is redelivered
	// before it is dead-lettered: 0 dead-letters it on its first failure
	// (as ActiveMQ's maximumRedeliveries), -1 never. A manifest that leaves
	// it out gets DefaultMaxRedeliveries (filled in by validation).
	MaxRedeliveries int `yaml:"maxRedeliveries,omitempty" json:"maxRedeliveries,omitempty"`
	// InitialDelay is the wait before the first redelivery: 0 redelivers at
	// once. Multiplier grows each next wait, up to MaxDelay. Validation
	// fills in what a manifest leaves out: DefaultInitialDelay,
	// DefaultMultiplier, and DefaultMaxDelay (or InitialDelay when longer).
	InitialDelay Duration `yaml:"initialDelay,omitempty" json:"initialDelay,omitempty"`
	Multiplier   float64  `yaml:"multiplier,omitempty" json:"multiplier,omitempty"`
	MaxDelay     Duration `yaml:"maxDelay,omitempty" json:"maxDelay,omitempty"`
	// DeadLetter defaults to "<destination>.DLQ".
	DeadLetter string `yaml:"deadLetter,omitempty" json:"deadLetter,omitempty"`
	// Retention of dead-letter records in minutes; 0 means default (7 days), -1 forever.
	Retention int `yaml:"retention,omitempty" json:"retention,omitempty"`
}

// Redelivery defaults, for what a policy leaves out.
const (
	DefaultMaxRedeliveries = 5
	DefaultInitialDelay    = time.Second
	DefaultMultiplier      = 2
	DefaultMaxDelay        = time.Minute
)

// Placement modes (CloverDX node IDs).
const (
	PlaceAny         = "any"
	PlacePinned      = "pinned"
	PlaceReservation = "reservation"
)

// Placement says which agents consume. In YAML it is either the scalar "any"
// or a map {pinned: [agent]} / {reservation: [agents...]}.
type Placement struct {
	Mode   string   `json:"mode"`
	Agents []string `json:"agents,omitempty"`
}

// Duration is a time.Duration that reads "30s"-style strings from YAML and
// writes them back the same way in JSON.
type Duration time.Duration

// Project is one deployed, validated version of a project: its manifest,
// files and compiled scripts. A Project is immutable once loaded and safe to
// share between goroutines.
type Project struct {
	Name      string
	Version   int
	CreatedAt time.Time
	Manifest  *Manifest
	// Files holds every file of the bundle by slash path ("operations/x.js").
	Files map[string][]byte
	// Programs holds each script file compiled once, by bundle path.
	Programs map[string]*goja.Program
	// Egress is the manifest's egress list, parsed once by Load (never nil
	// then). A Project built by hand may leave it nil, which allows nothing.
	Egress *egress.Policy

	// Lookup indexes built by Load; nil for a Project built by hand, in
	// which case the lookup methods scan the manifest.
	ops       map[string]*Operation
	hooks     map[string]*Operation
	listeners map[string]*Listener
}
