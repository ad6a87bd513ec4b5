package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Bounds of Local's processed markers.
const (
	// DefaultRetention is how long a processed marker is kept when
	// MarkProcessed is given a retention of zero.
	DefaultRetention = 24 * time.Hour
	// localMaxMarkers caps Local's processed markers; the oldest go first.
	localMaxMarkers = 100_000
)

// ErrClosed is returned by a coordinator's methods after Close.
var ErrClosed = errors.New("coordinator closed")

// Local is the Coordinator of a cluster of one: locks, markers and the one
// member live in memory. It is safe for concurrent use. The zero value is
// not usable; call NewLocal.
type Local struct {
	agentID    string
	maxMarkers int

	// epoch is what marker expiries count from: monotonic nanoseconds
	// since then keep the markers free of pointers the GC would scan.
	epoch time.Time

	mu      sync.Mutex
	locks   map[string]*localLease
	markers map[string]int64  // key → expiry, ns since epoch
	doubts  map[string]string // key → message id, for in-doubt markers
	order   markerQueue       // insertion order, for eviction
	member  *Member
	closed  bool
	seq     uint64 // the last lease's token
}

type marker struct {
	key     string
	expires int64 // ns since Local.epoch
}

// markerQueue is a FIFO of markers in a ring buffer: at the cap, every new
// marker evicts one, and a slice consumed from the front would be copied
// whole each time append ran out of room.
type markerQueue struct {
	buf     []marker
	head, n int
}

func (q *markerQueue) len() int { return q.n }

func (q *markerQueue) push(m marker) {
	if q.n == len(q.buf) {
		buf := make([]marker, max(16, 2*len(q.buf)))
		for i := range q.n {
			buf[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = buf, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = m
	q.n++
}

func (q *markerQueue) front() marker { return q.buf[q.head] }

func (q *markerQueue) pop() {
	q.buf[q.head] = marker{}
	q.head = (q.head + 1) % len(q.buf)
	q.n--
}

var _ Coordinator = (*Local)(nil)

// NewLocal returns the coordinator of a one-agent cluster; agentID is the
// leader until Heartbeat names the member.
func NewLocal(agentID string) *Local {
	return &Local{agentID: agentID, maxMarkers: localMaxMarkers, epoch: time.Now(), locks: make(map[string]*localLease), markers: make(map[string]int64), doubts: make(map[string]string)}
}

// localLease is a Local lock. In one process a refresh cannot fail, so a
// lease is held until Release, Expire or Close; ttl only documents intent.
type localLease struct {
	owner *Local
	key   string
	token uint64 // unique among this Local's leases
	lost  lostSignal
}

// Acquire implements Coordinator. It does not block.
func (l *Local) Acquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("acquire %s: %w", key, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, fmt.Errorf("acquire %s: %w", key, ErrClosed)
	}
	if _, held := l.locks[key]; held {
		return nil, fmt.Errorf("acquire %s: %w", key, ErrHeld)
	}
	l.seq++
	lease := &localLease{owner: l, key: key, token: l.seq}
	l.locks[key] = lease
	return lease, nil
}

// Expire makes the lease on key lapse as if its refresh had failed: its Lost
// channel closes, Check reports ErrLeaseLost and the key is free. It exists
// for tests and operators; unknown keys are ignored. It does not block.
func (l *Local) Expire(ctx context.Context, key string) error {
	l.mu.Lock()
	lease := l.locks[key]
	delete(l.locks, key)
	l.mu.Unlock()
	if lease != nil {
		lease.markLost()
	}
	return nil
}

func (ls *localLease) markLost() { ls.lost.fire() }

func (ls *localLease) Token() string                         { return strconv.FormatUint(ls.token, 10) }
func (ls *localLease) Lost() <-chan struct{}                 { return ls.lost.done() }
func (ls *localLease) AfterLost(f func()) (stop func() bool) { return ls.lost.after(f) }

func (ls *localLease) Check(ctx context.Context) error {
	ls.owner.mu.Lock()
	defer ls.owner.mu.Unlock()
	if ls.owner.locks[ls.key] != ls {
		return fmt.Errorf("lease %s: %w", ls.key, ErrLeaseLost)
	}
	return nil
}

func (ls *localLease) Release(ctx context.Context) error {
	ls.owner.mu.Lock()
	if ls.owner.locks[ls.key] == ls {
		delete(ls.owner.locks, ls.key)
	}
	ls.owner.mu.Unlock()
	return nil
}

// MarkProcessed implements Coordinator; retention zero means
// DefaultRetention. It keeps at most 100,000 markers, dropping the oldest.
func (l *Local) MarkProcessed(ctx context.Context, key string, retention time.Duration) error {
	l.mark(key, "", retention)
	return nil
}

// MarkInDoubt implements Coordinator, as MarkProcessed does.
func (l *Local) MarkInDoubt(ctx context.Context, key, messageID string, retention time.Duration) error {
	if messageID == "" {
		return fmt.Errorf("mark %s in doubt: %w", key, ErrNoMessageID)
	}
	l.mark(key, messageID, retention)
	return nil
}

// mark writes key's marker: processed when doubt is "", else in doubt
// with that message id.
func (l *Local) mark(key, doubt string, retention time.Duration) {
	if retention <= 0 {
		retention = DefaultRetention
	}
	now := int64(time.Since(l.epoch))
	exp := now + int64(retention)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.markers[key] = exp
	if doubt == "" {
		delete(l.doubts, key)
	} else {
		l.doubts[key] = doubt
	}
	l.order.push(marker{key, exp})
	// Drop from the front what expired or exceeds the cap. Entries whose key
	// was marked again later carry a stale expiry and are simply skipped.
	for l.order.len() > 0 {
		m := l.order.front()
		if len(l.markers) <= l.maxMarkers && now < m.expires {
			break
		}
		if l.markers[m.key] == m.expires {
			delete(l.markers, m.key)
			delete(l.doubts, m.key)
		}
		l.order.pop()
	}
}

// Processed implements Coordinator.
func (l *Local) Processed(ctx context.Context, key string) (bool, error) {
	m, err := l.Marker(ctx, key)
	return m.Processed, err
}

// Marker implements Coordinator.
func (l *Local) Marker(ctx context.Context, key string) (Marker, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	exp, ok := l.markers[key]
	if !ok || int64(time.Since(l.epoch)) >= exp {
		return Marker{}, nil
	}
	if id := l.doubts[key]; id != "" {
		return Marker{InDoubt: id}, nil
	}
	return Marker{Processed: true}, nil
}

// Heartbeat implements Coordinator: it stores m as the one member.
func (l *Local) Heartbeat(ctx context.Context, m Member) error {
	if m.LastSeen.IsZero() {
		m.LastSeen = time.Now().UTC()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("heartbeat: %w", ErrClosed)
	}
	l.member = &m
	return nil
}

// Members implements Coordinator: the one member (once it sent a heartbeat),
// always the leader.
func (l *Local) Members(ctx context.Context) ([]Member, string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.member == nil {
		return nil, l.agentID, nil
	}
	m := *l.member
	m.Leader = true
	return []Member{m}, m.ID, nil
}

// IsLeader reports whether this agent leads; a cluster of one always does.
func (l *Local) IsLeader() bool { return true }

// Ping reports whether the coordinator can serve; Local always can until
// closed.
func (l *Local) Ping(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	return nil
}

// Close implements Coordinator: every lease held is lost (its Lost channel
// closes). Idempotent.
func (l *Local) Close() error {
	l.mu.Lock()
	l.closed = true
	leases := l.locks
	l.locks = make(map[string]*localLease)
	l.mu.Unlock()
	for _, ls := range leases {
		ls.markLost()
	}
	return nil
}
