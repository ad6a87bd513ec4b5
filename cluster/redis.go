package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bsm/redislock"
	"github.com/redis/go-redis/v9"
)

// RedisOptions configures a Redis coordinator. The zero value uses every
// default.
type RedisOptions struct {
	// MemberTTL is how long a heartbeat keeps a member alive; zero means 5s.
	MemberTTL time.Duration
	// LeaderTTL is the lease of the leader key, refreshed by each of the
	// leader's heartbeats; zero means 3s. Agents should send heartbeats at
	// least every LeaderTTL/3. Failover takes at most LeaderTTL plus one
	// heartbeat interval of the successor (about 4s with the defaults).
	LeaderTTL time.Duration
}

// Redis is the Coordinator of agents sharing one Redis. It is safe for
// concurrent use. Keys live under the prefix given to NewRedis:
//
//	lock:<key>      redislock locks
//	done:<key>      markers (PX retention): "1" processed, "in-doubt:<id>" in doubt
//	member:<id>     heartbeat records (JSON, PX MemberTTL)
//	members         sorted set of member ids by start time
//	leader          the leader's id (SET NX PX LeaderTTL)
type Redis struct {
	c      redis.UniversalClient
	locker *redislock.Client
	prefix string
	opts   RedisOptions

	mu          sync.Mutex
	leases      map[*redisLease]struct{}
	self        string    // member id of the last heartbeat
	leaderUntil time.Time // leadership is ours until then
	closed      bool

	refreshers sync.WaitGroup
}

var _ Coordinator = (*Redis)(nil)

var (
	leaderRefresh = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) end return 0`)
	leaderResign  = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) end return 0`)
)

// NewRedis returns a coordinator over client with keys under prefix. It does
// no I/O; use Ping to check Redis. The caller keeps ownership of client.
func NewRedis(client redis.UniversalClient, prefix string, opts RedisOptions) *Redis {
	if opts.MemberTTL <= 0 {
		opts.MemberTTL = 5 * time.Second
	}
	if opts.LeaderTTL <= 0 {
		opts.LeaderTTL = 3 * time.Second
	}
	return &Redis{c: client, locker: redislock.New(client), prefix: prefix, opts: opts,
		leases: make(map[*redisLease]struct{})}
}

// Ping reports whether Redis answers (for readiness). It blocks on I/O.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}

// --- locks ---

type redisLease struct {
	owner    *Redis
	lock     *redislock.Lock
	key      string
	stop     chan struct{} // closed by Release/Close: stop refreshing
	lost     lostSignal
	stopOnce sync.Once
}

// Acquire implements Coordinator with a redislock lock refreshed every ttl/3
// by a goroutine the lease owns; Lost closes when a refresh fails (Redis
// unreachable, or the lock expired or was taken).
func (r *Redis) Acquire(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	if ttl < 30*time.Millisecond {
		return nil, fmt.Errorf("acquire %s: ttl %s too short", key, ttl)
	}
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("acquire %s: %w", key, ErrClosed)
	}
	lock, err := r.locker.Obtain(ctx, r.prefix+"lock:"+key, ttl, nil)
	if errors.Is(err, redislock.ErrNotObtained) {
		return nil, fmt.Errorf("acquire %s: %w", key, ErrHeld)
	}
	if err != nil {
		return nil, fmt.Errorf("acquire %s: %w", key, err)
	}
	ls := &redisLease{owner: r, lock: lock, key: key, stop: make(chan struct{})}
	r.mu.Lock()
	if r.closed { // closed meanwhile: give it back
		r.mu.Unlock()
		_ = lock.Release(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("acquire %s: %w", key, ErrClosed)
	}
	r.leases[ls] = struct{}{}
	r.refreshers.Add(1)
	r.mu.Unlock()
	go ls.refresh(ttl)
	return ls, nil
}

// refresh keeps the lock until stop, or closes lost on the first failure.
func (ls *redisLease) refresh(ttl time.Duration) {
	defer ls.owner.refreshers.Done()
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ls.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), ttl/3)
		err := ls.lock.Refresh(ctx, ttl, nil)
		cancel()
		if err != nil {
			ls.markLost()
			return
		}
	}
}

func (ls *redisLease) markLost() {
	ls.lost.fire()
	ls.stopOnce.Do(func() { close(ls.stop) })
	ls.owner.mu.Lock()
	delete(ls.owner.leases, ls)
	ls.owner.mu.Unlock()
}

func (ls *redisLease) Token() string                         { return ls.lock.Token() }
func (ls *redisLease) Lost() <-chan struct{}                 { return ls.lost.done() }
func (ls *redisLease) AfterLost(f func()) (stop func() bool) { return ls.lost.after(f) }

// Check asks Redis whether the lock still carries this lease's token. When
// Redis cannot answer the lease counts as lost: nobody can promise it is ours.
func (ls *redisLease) Check(ctx context.Context) error {
	select {
	case <-ls.stop:
		return fmt.Errorf("lease %s: %w", ls.key, ErrLeaseLost)
	default:
	}
	ttl, err := ls.lock.TTL(ctx)
	if err != nil {
		return fmt.Errorf("lease %s: %w: %w", ls.key, ErrLeaseLost, err)
	}
	if ttl <= 0 {
		ls.markLost()
		return fmt.Errorf("lease %s: %w", ls.key, ErrLeaseLost)
	}
	return nil
}

// Release stops refreshing and deletes the lock if it still carries this
// lease's token (never another holder's). Idempotent.
func (ls *redisLease) Release(ctx context.Context) error {
	released := false
	ls.stopOnce.Do(func() { close(ls.stop); released = true })
	if !released {
		return nil
	}
	ls.owner.mu.Lock()
	delete(ls.owner.leases, ls)
	ls.owner.mu.Unlock()
	if err := ls.lock.Release(ctx); err != nil && !errors.Is(err, redislock.ErrLockNotHeld) {
		return fmt.Errorf("release %s: %w", ls.key, err)
	}
	return nil
}

// Expire deletes the lock on key whoever holds it, as if it had lapsed; the
// holder's Lost closes at its next refresh. For tests and operators.
func (r *Redis) Expire(ctx context.Context, key string) error {
	if err := r.c.Del(ctx, r.prefix+"lock:"+key).Err(); err != nil {
		return fmt.Errorf("expire %s: %w", key, err)
	}
	return nil
}

// --- processed markers ---

// inDoubtPrefix begins the value of an in-doubt marker, before its
// message id; a processed marker's value is "1".
const inDoubtPrefix = "in-doubt:"

// MarkProcessed implements Coordinator with a key of PX retention; zero
// means DefaultRetention.
func (r *Redis) MarkProcessed(ctx context.Context, key string, retention time.Duration) error {
	if err := r.mark(ctx, key, "1", retention); err != nil {
		return fmt.Errorf("mark %s processed: %w", key, err)
	}
	return nil
}

// MarkInDoubt implements Coordinator in the key MarkProcessed writes.
func (r *Redis) MarkInDoubt(ctx context.Context, key, messageID string, retention time.Duration) error {
	if messageID == "" {
		return fmt.Errorf("mark %s in doubt: %w", key, ErrNoMessageID)
	}
	if err := r.mark(ctx, key, inDoubtPrefix+messageID, retention); err != nil {
		return fmt.Errorf("mark %s in doubt: %w", key, err)
	}
	return nil
}

func (r *Redis) mark(ctx context.Context, key, value string, retention time.Duration) error {
	if retention <= 0 {
		retention = DefaultRetention
	}
	return r.c.Set(ctx, r.prefix+"done:"+key, value, retention).Err()
}

// Processed implements Coordinator.
func (r *Redis) Processed(ctx context.Context, key string) (bool, error) {
	m, err := r.Marker(ctx, key)
	return m.Processed, err
}

// Marker implements Coordinator with one GET.
func (r *Redis) Marker(ctx context.Context, key string) (Marker, error) {
	v, err := r.c.Get(ctx, r.prefix+"done:"+key).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return Marker{}, nil
	case err != nil:
		return Marker{}, fmt.Errorf("read marker %s: %w", key, err)
	}
	if id, ok := strings.CutPrefix(v, inDoubtPrefix); ok {
		return Marker{InDoubt: id}, nil
	}
	return Marker{Processed: true}, nil
}

// --- membership and leadership ---

// Heartbeat implements Coordinator: it writes m (LastSeen set to now) with
// MemberTTL, then refreshes leadership if this agent leads, or takes it if
// the leader key lapsed and this agent is the oldest live member. It blocks
// on a few round trips.
func (r *Redis) Heartbeat(ctx context.Context, m Member) error {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return fmt.Errorf("heartbeat: %w", ErrClosed)
	}
	now := time.Now().UTC()
	m.LastSeen, m.Leader = now, false
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	_, err = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, r.prefix+"member:"+m.ID, b, r.opts.MemberTTL)
		p.ZAdd(ctx, r.prefix+"members", redis.Z{Score: float64(m.StartedAt.UnixMilli()), Member: m.ID})
		return nil
	})
	if err != nil {
		r.setLeader(m.ID, time.Time{})
		return fmt.Errorf("heartbeat: %w", err)
	}
	ttl := strconv.FormatInt(r.opts.LeaderTTL.Milliseconds(), 10)
	kept, err := leaderRefresh.Run(ctx, r.c, []string{r.prefix + "leader"}, m.ID, ttl).Int()
	if err != nil {
		r.setLeader(m.ID, time.Time{})
		return fmt.Errorf("heartbeat: refresh leadership: %w", err)
	}
	if kept == 1 {
		r.setLeader(m.ID, now.Add(r.opts.LeaderTTL))
		return nil
	}
	r.setLeader(m.ID, time.Time{})
	members, leader, err := r.Members(ctx)
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	if leader != "" {
		return nil
	}
	// The oldest member that is visibly alive (seen within LeaderTTL; a
	// dead leader's record outlives its leader key) takes over.
	for _, c := range members {
		if now.Sub(c.LastSeen) >= r.opts.LeaderTTL {
			continue
		}
		if c.ID != m.ID {
			return nil
		}
		ok, err := r.c.SetNX(ctx, r.prefix+"leader", m.ID, r.opts.LeaderTTL).Result()
		if err != nil {
			return fmt.Errorf("heartbeat: take leadership: %w", err)
		}
		if ok {
			r.setLeader(m.ID, now.Add(r.opts.LeaderTTL))
		}
		return nil
	}
	return nil
}

func (r *Redis) setLeader(self string, until time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.self, r.leaderUntil = self, until
}

// IsLeader reports whether this agent held the leader key at its last
// heartbeat and that lease has not run out. It does not block on I/O.
func (r *Redis) IsLeader() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.closed && time.Now().Before(r.leaderUntil)
}

// Members implements Coordinator: live members oldest first (by StartedAt),
// each with Leader set, and the leader's id ("" while there is none).
// Members whose record expired are dropped from the index on the way.
func (r *Redis) Members(ctx context.Context) ([]Member, string, error) {
	ids, err := r.c.ZRange(ctx, r.prefix+"members", 0, -1).Result()
	if err != nil {
		return nil, "", fmt.Errorf("list members: %w", err)
	}
	leader, err := r.c.Get(ctx, r.prefix+"leader").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, "", fmt.Errorf("read leader: %w", err)
	}
	if len(ids) == 0 {
		return nil, leader, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = r.prefix + "member:" + id
	}
	vals, err := r.c.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, "", fmt.Errorf("list members: %w", err)
	}
	var (
		out  []Member
		dead []any
	)
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			dead = append(dead, ids[i])
			continue
		}
		var m Member
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			return nil, "", fmt.Errorf("decode member %s: %w", ids[i], err)
		}
		m.Leader = m.ID == leader
		out = append(out, m)
	}
	if len(dead) > 0 {
		// Best effort: a member that heartbeats again re-adds itself.
		_ = r.c.ZRem(ctx, r.prefix+"members", dead...).Err()
	}
	return out, leader, nil
}

// Close implements Coordinator: it stops every lease (their Lost channels
// close) and releases their locks, resigns leadership and removes this
// agent's member record so that a successor takes over at once. It blocks
// up to about 2 s on Redis. Idempotent.
func (r *Redis) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	leases := make([]*redisLease, 0, len(r.leases))
	for ls := range r.leases {
		leases = append(leases, ls)
	}
	self := r.self
	r.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var errs []error
	for _, ls := range leases {
		errs = append(errs, ls.Release(ctx))
		ls.markLost()
	}
	r.refreshers.Wait()
	if self != "" {
		errs = append(errs, leaderResign.Run(ctx, r.c, []string{r.prefix + "leader"}, self).Err())
		_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, r.prefix+"member:"+self)
			p.ZRem(ctx, r.prefix+"members", self)
			return nil
		})
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close coordinator: %w", err)
	}
	return nil
}
