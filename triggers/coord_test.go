package triggers_test

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/opsrunner/opsrunner/cluster"
)

// memCoordinator is an in-process cluster.Coordinator for these tests, used
// until cluster.NewLocal lands; it implements the interface's documented
// semantics (leased locks, processed markers) without I/O.
type memCoordinator struct {
	mu     sync.Mutex
	locks  map[string]string // key → token
	marks  map[string]time.Time
	tokens int
}

func newMemCoordinator() *memCoordinator {
	return &memCoordinator{locks: map[string]string{}, marks: map[string]time.Time{}}
}

type memLease struct {
	c        *memCoordinator
	key, tok string
	lost     chan struct{}
	release  sync.Once
}

func (c *memCoordinator) Acquire(_ context.Context, key string, _ time.Duration) (cluster.Lease, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, held := c.locks[key]; held {
		return nil, cluster.ErrHeld
	}
	c.tokens++
	tok := strconv.Itoa(c.tokens)
	c.locks[key] = tok
	return &memLease{c: c, key: key, tok: tok, lost: make(chan struct{})}, nil
}

func (c *memCoordinator) MarkProcessed(_ context.Context, key string, retention time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.marks[key] = time.Now().Add(retention)
	return nil
}

func (c *memCoordinator) Processed(_ context.Context, key string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.marks[key]
	return ok && time.Now().Before(exp), nil
}

func (c *memCoordinator) Heartbeat(context.Context, cluster.Member) error { return nil }
func (c *memCoordinator) Members(context.Context) ([]cluster.Member, string, error) {
	return nil, "", nil
}
func (c *memCoordinator) Close() error { return nil }

func (l *memLease) Token() string { return l.tok }
func (l *memLease) Check(context.Context) error {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	if l.c.locks[l.key] != l.tok {
		return cluster.ErrLeaseLost
	}
	return nil
}
func (l *memLease) Lost() <-chan struct{} { return l.lost }
func (l *memLease) Release(context.Context) error {
	l.release.Do(func() {
		l.c.mu.Lock()
		defer l.c.mu.Unlock()
		if l.c.locks[l.key] == l.tok {
			delete(l.c.locks, l.key)
		}
	})
	return nil
}
