// Package cluster coordinates agents: leased locks for single processing,
// processed markers, membership, leadership and load. Local serves a cluster
// of one; the Redis implementation serves many agents sharing one Redis.
package cluster

import (
	"context"
	"errors"
	"time"
)

// ErrHeld is returned by Acquire when another holder owns the key.
var ErrHeld = errors.New("lock held by another holder")

// ErrLeaseLost is returned when a lease expired or was taken over.
var ErrLeaseLost = errors.New("lease lost")

// Coordinator is the cluster as one agent sees it. Implementations are safe
// for concurrent use.
type Coordinator interface {
	// Acquire takes a leased lock on key for ttl and keeps refreshing it until
	// Release or until refreshing fails (then Lost is closed). It returns
	// ErrHeld when another holder owns the key. It does not block waiting.
	Acquire(ctx context.Context, key string, ttl time.Duration) (Lease, error)
	// MarkProcessed records key as processed for retention, replacing an
	// in-doubt marker.
	MarkProcessed(ctx context.Context, key string, retention time.Duration) error
	// Processed reports whether key carries a processed marker (an
	// in-doubt marker is not one).
	Processed(ctx context.Context, key string) (bool, error)
	// MarkInDoubt records for retention that key's work was in a commit
	// sent but never confirmed, by the delivery of the broker message
	// messageID (not empty); it replaces the key's marker, if any.
	MarkInDoubt(ctx context.Context, key, messageID string, retention time.Duration) error
	// Marker reads key's marker; the zero Marker means none.
	Marker(ctx context.Context, key string) (Marker, error)
	// Heartbeat publishes this agent's membership record (with its TTL).
	Heartbeat(ctx context.Context, m Member) error
	// Members lists live members, oldest first, and the leader's id.
	Members(ctx context.Context) (members []Member, leader string, err error)
	// Close releases every resource. Idempotent.
	Close() error
}

// Marker is what a key's marker records. The zero value means no marker.
type Marker struct {
	// Processed: the work is done (MarkProcessed).
	Processed bool
	// InDoubt, when not empty, is the broker message id of the delivery
	// whose commit of the work was sent but never confirmed (MarkInDoubt):
	// the work may or may not be done.
	InDoubt string
}

// ErrNoMessageID is returned by MarkInDoubt given an empty message id.
var ErrNoMessageID = errors.New("in-doubt marker without a message id")

// Lease is a held lock. Release is idempotent and safe from any goroutine.
type Lease interface {
	// Token identifies this holding; it changes on every Acquire.
	Token() string
	// Check returns nil while the lease is still ours (fencing before commit),
	// ErrLeaseLost otherwise. It may do I/O.
	Check(ctx context.Context) error
	// Lost is closed when the lease could not be refreshed.
	Lost() <-chan struct{}
	// AfterLost arranges for f to run on its own goroutine once the lease
	// is lost (at once if it is already), as context.AfterFunc does for a
	// context: watching a lease costs no goroutine while it is held. stop
	// unregisters f and reports whether it kept f from running.
	AfterLost(f func()) (stop func() bool)
	// Release gives the lock up. Idempotent.
	Release(ctx context.Context) error
}

// Member is one agent's heartbeat record (the Contract's members shape).
type Member struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	// Capacity is the agent's workers, InFlight those executing a script;
	// MaxInflight bounds its runs in progress (Running), waiting ones
	// included.
	Capacity    int       `json:"capacity"`
	InFlight    int       `json:"inFlight"`
	MaxInflight int       `json:"maxInflight,omitempty"`
	Version     string    `json:"version"`
	StartedAt   time.Time `json:"startedAt"`
	LastSeen    time.Time `json:"lastSeen"`
	Leader      bool      `json:"leader"`

	// Running counts the agent's runs in progress; StuckRuns those of them
	// past their operation's time limit plus a grace: workers that scripts
	// hold beyond their timeout.
	Running   int `json:"running"`
	StuckRuns int `json:"stuckRuns"`
}
