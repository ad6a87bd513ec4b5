package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions configures a Redis store. The zero value uses every default.
type RedisOptions struct {
	// Retention bounds run history (see Retention for its defaults).
	Retention Retention
	// DeadLetterRetention gives dead letters stored without ExpiresAt an
	// expiry of FailedAt+DeadLetterRetention; zero keeps such letters forever.
	DeadLetterRetention time.Duration
}

// Redis is a Store shared by the agents of a cluster. It is safe for
// concurrent use. Keys all start with the prefix given to OpenRedis; a
// project's keys share one hash tag so they can change in one transaction.
// Writes are not buffered (PutRun is one pipelined round trip), so every
// agent sees a run as soon as PutRun returns. It implements Watcher over
// Redis pub/sub on the channel "<prefix>changes".
type Redis struct {
	c      redis.UniversalClient
	prefix string
	opts   RedisOptions

	done      chan struct{} // closed by Close; ends watchers
	watchers  sync.WaitGroup
	closeOnce sync.Once
}

var (
	_ Store   = (*Redis)(nil)
	_ Watcher = (*Redis)(nil)
)

// OpenRedis returns a store over client using keys under prefix. It pings
// Redis (up to 5 s) so that a wrong address fails here. The caller keeps
// ownership of client: Close does not close it.
func OpenRedis(client redis.UniversalClient, prefix string, opts RedisOptions) (*Redis, error) {
	if client == nil {
		return nil, errors.New("open redis store: nil client")
	}
	opts.Retention = opts.Retention.withDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("open redis store: %w", err)
	}
	s := &Redis{c: client, prefix: prefix, opts: opts, done: make(chan struct{})}
	if err := s.indexRuns(ctx); err != nil {
		return nil, fmt.Errorf("open redis store: index runs: %w", err)
	}
	return s, nil
}

func (r *Redis) key(parts ...string) string {
	k := r.prefix
	for i, p := range parts {
		if i > 0 {
			k += ":"
		}
		k += p
	}
	return k
}

// projectKey names one of a project's keys; the {name} hash tag keeps them
// in one slot on Redis Cluster.
func (r *Redis) projectKey(name, what string) string {
	return r.prefix + "project:{" + name + "}:" + what
}

func (r *Redis) publish(ctx context.Context, c Change) error {
	b, _ := json.Marshal(c)
	if err := r.c.Publish(ctx, r.key("changes"), b).Err(); err != nil {
		return fmt.Errorf("publish %s change %s: %w", c.Kind, c.Key, err)
	}
	return nil
}

// Watch implements Watcher: it subscribes to "<prefix>changes" before it
// returns, so every change published afterwards (by any agent) is reported.
// Changes published while the connection is down are missed.
func (r *Redis) Watch(ctx context.Context) <-chan Change {
	out := make(chan Change, watchBuffer)
	ps := r.c.Subscribe(ctx, r.key("changes"))
	// Wait for the subscription to be confirmed; if Redis is unreachable the
	// channel below reconnects and resubscribes by itself.
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, _ = ps.Receive(rctx)
	cancel()
	r.watchers.Add(1)
	go func() {
		defer r.watchers.Done()
		defer close(out)
		defer ps.Close()
		msgs := ps.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case <-r.done:
				return
			case m, ok := <-msgs:
				if !ok {
					return
				}
				var c Change
				if json.Unmarshal([]byte(m.Payload), &c) != nil {
					continue
				}
				select {
				case out <- c:
				default: // slow watcher: drop rather than stall the subscription
				}
			}
		}
	}()
	return out
}

// --- projects ---

// SaveProjectVersion implements Store and announces a ChangeProject.
func (r *Redis) SaveProjectVersion(ctx context.Context, name string, bundle []byte, note string) (ProjectVersion, error) {
	v, err := r.c.Incr(ctx, r.projectKey(name, "seq")).Result()
	if err != nil {
		return ProjectVersion{}, fmt.Errorf("save project %s: %w", name, err)
	}
	pv := ProjectVersion{Project: name, Version: int(v), CreatedAt: time.Now().UTC(), Note: note, Size: len(bundle)}
	meta, _ := json.Marshal(pv)
	vs := strconv.Itoa(pv.Version)
	_, err = r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, r.projectKey(name, "bundle:"+vs), bundle, 0)
		p.HSet(ctx, r.projectKey(name, "versions"), vs, meta)
		p.Set(ctx, r.projectKey(name, "active"), vs, 0)
		return nil
	})
	if err == nil {
		err = r.c.SAdd(ctx, r.key("projects"), name).Err()
	}
	if err != nil {
		return ProjectVersion{}, fmt.Errorf("save project %s version %d: %w", name, pv.Version, err)
	}
	return pv, r.publish(ctx, Change{Kind: ChangeProject, Key: name})
}

// ProjectVersion implements Store. Version 0 means the active version.
func (r *Redis) ProjectVersion(ctx context.Context, name string, version int) (ProjectVersion, []byte, error) {
	if version == 0 {
		active, err := r.c.Get(ctx, r.projectKey(name, "active")).Int()
		if errors.Is(err, redis.Nil) {
			return ProjectVersion{}, nil, fmt.Errorf("project %s: %w", name, ErrNotFound)
		}
		if err != nil {
			return ProjectVersion{}, nil, fmt.Errorf("read project %s: %w", name, err)
		}
		version = active
	}
	vs := strconv.Itoa(version)
	meta, err := r.c.HGet(ctx, r.projectKey(name, "versions"), vs).Bytes()
	if errors.Is(err, redis.Nil) {
		return ProjectVersion{}, nil, fmt.Errorf("project %s version %d: %w", name, version, ErrNotFound)
	}
	if err != nil {
		return ProjectVersion{}, nil, fmt.Errorf("read project %s version %d: %w", name, version, err)
	}
	var pv ProjectVersion
	if err := json.Unmarshal(meta, &pv); err != nil {
		return ProjectVersion{}, nil, fmt.Errorf("decode project %s version %d: %w", name, version, err)
	}
	bundle, err := r.c.Get(ctx, r.projectKey(name, "bundle:"+vs)).Bytes()
	if err != nil {
		return ProjectVersion{}, nil, fmt.Errorf("read project %s bundle %d: %w", name, version, err)
	}
	return pv, bundle, nil
}

// Projects implements Store.
func (r *Redis) Projects(ctx context.Context) ([]ProjectInfo, error) {
	names, err := r.c.SMembers(ctx, r.key("projects")).Result()
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	slices.Sort(names)
	out := make([]ProjectInfo, 0, len(names))
	for _, name := range names {
		var (
			versions *redis.MapStringStringCmd
			active   *redis.StringCmd
		)
		_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			versions = p.HGetAll(ctx, r.projectKey(name, "versions"))
			active = p.Get(ctx, r.projectKey(name, "active"))
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("list project %s: %w", name, err)
		}
		info := ProjectInfo{Name: name}
		info.ActiveVersion, _ = strconv.Atoi(active.Val())
		for _, meta := range versions.Val() {
			var pv ProjectVersion
			if err := json.Unmarshal([]byte(meta), &pv); err != nil {
				return nil, fmt.Errorf("decode project %s: %w", name, err)
			}
			info.Versions = append(info.Versions, pv)
		}
		slices.SortFunc(info.Versions, func(a, b ProjectVersion) int { return a.Version - b.Version })
		out = append(out, info)
	}
	return out, nil
}

// SetActiveVersion implements Store and announces a ChangeProject; an
// unknown project or version gives an error wrapping ErrNotFound.
func (r *Redis) SetActiveVersion(ctx context.Context, name string, version int) error {
	ok, err := r.c.HExists(ctx, r.projectKey(name, "versions"), strconv.Itoa(version)).Result()
	if err != nil {
		return fmt.Errorf("set active version of %s: %w", name, err)
	}
	if !ok {
		return fmt.Errorf("set active version: project %s version %d: %w", name, version, ErrNotFound)
	}
	if err := r.c.Set(ctx, r.projectKey(name, "active"), version, 0).Err(); err != nil {
		return fmt.Errorf("set active version of %s: %w", name, err)
	}
	return r.publish(ctx, Change{Kind: ChangeProject, Key: name})
}

// DeleteProject implements Store and announces a ChangeProject. The name
// leaves the project set first, so a listing made meanwhile does not show
// a project without versions.
func (r *Redis) DeleteProject(ctx context.Context, name string) error {
	removed, err := r.c.SRem(ctx, r.key("projects"), name).Result()
	if err != nil {
		return fmt.Errorf("delete project %s: %w", name, err)
	}
	if removed == 0 {
		return fmt.Errorf("delete project: project %s: %w", name, ErrNotFound)
	}
	versions, err := r.c.HKeys(ctx, r.projectKey(name, "versions")).Result()
	if err != nil {
		return fmt.Errorf("delete project %s: %w", name, err)
	}
	keys := []string{r.projectKey(name, "versions"), r.projectKey(name, "active"), r.projectKey(name, "seq")}
	for _, v := range versions {
		keys = append(keys, r.projectKey(name, "bundle:"+v))
	}
	if err := r.c.Del(ctx, keys...).Err(); err != nil {
		return fmt.Errorf("delete project %s: %w", name, err)
	}
	return r.publish(ctx, Change{Kind: ChangeProject, Key: name})
}

// --- states ---

// State implements Store.
func (r *Redis) State(ctx context.Context, key string) (enabled, ok bool, err error) {
	v, err := r.c.HGet(ctx, r.key("states"), key).Result()
	if errors.Is(err, redis.Nil) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("read state %s: %w", key, err)
	}
	return v == "1", true, nil
}

// SetState implements Store and announces a ChangeState.
func (r *Redis) SetState(ctx context.Context, key string, enabled bool) error {
	v := "0"
	if enabled {
		v = "1"
	}
	if err := r.c.HSet(ctx, r.key("states"), key, v).Err(); err != nil {
		return fmt.Errorf("set state %s: %w", key, err)
	}
	return r.publish(ctx, Change{Kind: ChangeState, Key: key})
}

// --- runs ---
// A run is a JSON string at run:<id>; "runs" is a sorted set of ids with
// score 0, so that lexical ranges give newest-first ULID order and paging;
// "runs:time" scores ids by StartedAt (ms) for the age sweep and Since.
// Each filter field's value has a set like "runs" of the ids of the runs
// that have it, runs:by:<field byte>:<value> (see runIndexKey); a query
// walks the smallest set of its fields. "runs:indexed" marks a prefix
// whose sets are complete (runs stored before them are indexed at open).

// runIndexKey names the set of the ids of runs whose field has p's value.
func (r *Redis) runIndexKey(p posting) string {
	return r.prefix + "runs:by:" + string(p.field) + ":" + p.value
}

// PutRun implements Store in one pipelined round trip, two when the run
// was stored before with other filter values (it leaves their sets). The
// count of runs holds at every write, within the trim slack of a Bolt
// store: a put that finds more than that beyond MaxRuns deletes the oldest
// runs beyond it (agents trimming at once delete the same runs, which is
// harmless).
func (r *Redis) PutRun(ctx context.Context, run Run) error {
	stored, err := r.putRun(ctx, run)
	if err != nil {
		return err
	}
	return r.trimRuns(ctx, stored)
}

// trimSlack is how far past maxRuns the Redis store may go before a write
// trims: a 64th of maxRuns, at least 64 runs. Deleting in batches touches
// the oldest entries once per batch rather than at every write.
func trimSlack(maxRuns int) int { return max(maxRuns/64, 64) }

// trimRuns deletes the oldest runs beyond MaxRuns when more than its trim
// slack wait; stored is the count of runs.
func (r *Redis) trimRuns(ctx context.Context, stored int64) error {
	maxRuns := r.opts.Retention.MaxRuns
	excess := stored - int64(maxRuns)
	if excess <= int64(trimSlack(maxRuns)) {
		return nil
	}
	ids, err := r.c.ZRange(ctx, r.key("runs"), 0, excess-1).Result()
	if err != nil {
		return fmt.Errorf("trim runs: %w", err)
	}
	if err := r.deleteRuns(ctx, ids); err != nil {
		return fmt.Errorf("trim runs: %w", err)
	}
	return nil
}

// putRun writes run and its sets; it returns the count of runs stored.
func (r *Redis) putRun(ctx context.Context, run Run) (stored int64, err error) {
	if run.ID == "" {
		return 0, errors.New("put run: empty id")
	}
	select {
	case <-r.done:
		return 0, fmt.Errorf("put run %s: %w", run.ID, ErrClosed)
	default:
	}
	b, err := encodeRun(run)
	if err != nil {
		return 0, err
	}
	m := metaOf(run)
	var prev *redis.StatusCmd
	var count *redis.IntCmd
	cmds, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		prev = p.SetArgs(ctx, r.key("run", run.ID), b, redis.SetArgs{Get: true})
		p.ZAdd(ctx, r.key("runs"), redis.Z{Score: 0, Member: run.ID})
		count = p.ZCard(ctx, r.key("runs"))
		p.ZAdd(ctx, r.key("runs:time"), redis.Z{Score: float64(run.StartedAt.UnixMilli()), Member: run.ID})
		for _, pst := range m.postings() {
			if pst.value != "" {
				p.ZAdd(ctx, r.runIndexKey(pst), redis.Z{Score: 0, Member: run.ID})
			}
		}
		return nil
	})
	if err = firstError(cmds, err); err != nil {
		return 0, fmt.Errorf("put run %s: %w", run.ID, err)
	}
	if prev.Err() != nil {
		return count.Val(), nil // a new run
	}
	old, err := decodeRun([]byte(prev.Val()))
	if err != nil {
		return count.Val(), nil // the former version is unreadable: its sets stay (a query skips what no longer matches)
	}
	was, now := metaOf(old).postings(), m.postings()
	_, err = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, pst := range was {
			if pst.value != "" && pst != now[i] {
				p.ZRem(ctx, r.runIndexKey(pst), run.ID)
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("put run %s: leave former filter sets: %w", run.ID, err)
	}
	return count.Val(), nil
}

// firstError is the first error of cmds other than redis.Nil (a GET of a
// key that is not set), or err when it is not a command's.
func firstError(cmds []redis.Cmder, err error) error {
	for _, c := range cmds {
		if e := c.Err(); e != nil && !errors.Is(e, redis.Nil) {
			return e
		}
	}
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

// Run implements Store.
func (r *Redis) Run(ctx context.Context, id string) (Run, error) {
	b, err := r.c.Get(ctx, r.key("run", id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return Run{}, fmt.Errorf("run %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Run{}, fmt.Errorf("read run %s: %w", id, err)
	}
	return decodeRun(b)
}

// Runs implements Store: it walks, newest first in chunks, the smallest
// set of f's filter fields (all runs when none is set) and filters the
// decoded runs. A value no run has, or a Since no run reaches, answers
// without a walk; Since stops the walk a minute past it (as in Bolt).
func (r *Redis) Runs(ctx context.Context, f RunFilter) ([]Run, error) {
	walk, empty, err := r.runWalkKey(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	if empty {
		return nil, nil
	}
	limit := f.PageSize()
	chunk := int64(256)
	if f == (RunFilter{Before: f.Before, Limit: f.Limit}) {
		chunk = int64(limit)
	}
	upper := "+"
	if f.Before != "" {
		upper = "(" + f.Before
	}
	var out []Run
	for len(out) < limit {
		ids, err := r.c.ZRevRangeByLex(ctx, walk, &redis.ZRangeBy{Max: upper, Min: "-", Count: chunk}).Result()
		if err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		if len(ids) == 0 {
			break
		}
		keys := make([]string, len(ids))
		for i, id := range ids {
			keys[i] = r.key("run", id)
		}
		vals, err := r.c.MGet(ctx, keys...).Result()
		if err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		for _, v := range vals {
			s, ok := v.(string)
			if !ok {
				continue // swept meanwhile
			}
			run, err := decodeRun([]byte(s))
			if err != nil {
				return nil, err
			}
			if !f.Since.IsZero() && run.StartedAt.Before(f.Since.Add(-sinceSlack)) {
				return out, nil // every older id started earlier still
			}
			if f.Matches(run) && len(out) < limit {
				out = append(out, run)
			}
		}
		upper = "(" + ids[len(ids)-1]
	}
	return out, nil
}

// runWalkKey returns the set a query with f walks: the smallest of its
// fields' sets, or "runs". empty is true when a set is empty or no run
// started at or after f.Since: nothing matches.
func (r *Redis) runWalkKey(ctx context.Context, f RunFilter) (key string, empty bool, err error) {
	wanted := filterPostings(f)
	cards := make([]*redis.IntCmd, len(wanted))
	var since *redis.IntCmd
	_, err = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, pst := range wanted {
			cards[i] = p.ZCard(ctx, r.runIndexKey(pst))
		}
		if !f.Since.IsZero() {
			since = p.ZCount(ctx, r.key("runs:time"), strconv.FormatInt(f.Since.UnixMilli(), 10), "+inf")
		}
		return nil
	})
	if err != nil {
		return "", false, err
	}
	if since != nil && since.Val() == 0 {
		return "", true, nil
	}
	key = r.key("runs")
	smallest := int64(-1)
	for i, c := range cards {
		if c.Val() == 0 {
			return "", true, nil
		}
		if smallest < 0 || c.Val() < smallest {
			key, smallest = r.runIndexKey(wanted[i]), c.Val()
		}
	}
	return key, false, nil
}

// indexRuns adds the runs stored before the filter sets to them, once per
// prefix (bounded by the retention); agents doing it together do the
// same thing twice.
func (r *Redis) indexRuns(ctx context.Context) error {
	if n, err := r.c.Exists(ctx, r.key("runs:indexed")).Result(); err != nil || n == 1 {
		return err
	}
	ids, err := r.c.ZRange(ctx, r.key("runs"), 0, -1).Result()
	if err != nil {
		return err
	}
	for batch := range slices.Chunk(ids, 500) {
		runs, err := r.runsOf(ctx, batch)
		if err != nil {
			return err
		}
		_, err = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, run := range runs {
				for _, pst := range metaOf(run).postings() {
					if pst.value != "" {
						p.ZAdd(ctx, r.runIndexKey(pst), redis.Z{Score: 0, Member: run.ID})
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return r.c.Set(ctx, r.key("runs:indexed"), "1", 0).Err()
}

// runsOf reads the stored runs of ids; missing ones are left out.
func (r *Redis) runsOf(ctx context.Context, ids []string) ([]Run, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = r.key("run", id)
	}
	vals, err := r.c.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	var out []Run
	for _, v := range vals {
		if s, ok := v.(string); ok {
			if run, err := decodeRun([]byte(s)); err == nil {
				out = append(out, run)
			}
		}
	}
	return out, nil
}

// Flush implements Store; Redis writes are not buffered, so it does nothing.
func (r *Redis) Flush(ctx context.Context) error { return nil }

// --- dead letters ---
// A dead letter is JSON at dl:<id>; "dls" indexes ids lexically (score 0),
// "dls:expiry" scores the ids that expire by ExpiresAt (ms).

// PutDeadLetter implements Store.
func (r *Redis) PutDeadLetter(ctx context.Context, d DeadLetter) error {
	if d.ID == "" {
		return errors.New("put dead letter: empty id")
	}
	if d.ExpiresAt.IsZero() && r.opts.DeadLetterRetention > 0 {
		d.ExpiresAt = d.FailedAt.Add(r.opts.DeadLetterRetention)
	}
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encode dead letter %s: %w", d.ID, err)
	}
	_, err = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, r.key("dl", d.ID), b, 0)
		p.ZAdd(ctx, r.key("dls"), redis.Z{Score: 0, Member: d.ID})
		if d.ExpiresAt.IsZero() {
			p.ZRem(ctx, r.key("dls:expiry"), d.ID)
		} else {
			p.ZAdd(ctx, r.key("dls:expiry"), redis.Z{Score: float64(d.ExpiresAt.UnixMilli()), Member: d.ID})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put dead letter %s: %w", d.ID, err)
	}
	return nil
}

// DeadLetter implements Store.
func (r *Redis) DeadLetter(ctx context.Context, id string) (DeadLetter, error) {
	b, err := r.c.Get(ctx, r.key("dl", id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return DeadLetter{}, fmt.Errorf("dead letter %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return DeadLetter{}, fmt.Errorf("read dead letter %s: %w", id, err)
	}
	var d DeadLetter
	if err := json.Unmarshal(b, &d); err != nil {
		return DeadLetter{}, fmt.Errorf("decode dead letter %s: %w", id, err)
	}
	return d, nil
}

// DeadLetters implements Store: newest (highest ID) first.
func (r *Redis) DeadLetters(ctx context.Context, f DeadLetterFilter) ([]DeadLetter, error) {
	limit := f.limit()
	upper := "+"
	var out []DeadLetter
	for len(out) < limit {
		ids, err := r.c.ZRevRangeByLex(ctx, r.key("dls"), &redis.ZRangeBy{Max: upper, Min: "-", Count: 256}).Result()
		if err != nil {
			return nil, fmt.Errorf("list dead letters: %w", err)
		}
		if len(ids) == 0 {
			break
		}
		keys := make([]string, len(ids))
		for i, id := range ids {
			keys[i] = r.key("dl", id)
		}
		vals, err := r.c.MGet(ctx, keys...).Result()
		if err != nil {
			return nil, fmt.Errorf("list dead letters: %w", err)
		}
		for _, v := range vals {
			s, ok := v.(string)
			if !ok {
				continue
			}
			var d DeadLetter
			if err := json.Unmarshal([]byte(s), &d); err != nil {
				return nil, fmt.Errorf("decode dead letter: %w", err)
			}
			if (f.Listener == "" || d.Listener == f.Listener) && len(out) < limit {
				out = append(out, d)
			}
		}
		upper = "(" + ids[len(ids)-1]
	}
	return out, nil
}

// DeleteDeadLetter implements Store; deleting a missing letter is not an error.
func (r *Redis) DeleteDeadLetter(ctx context.Context, id string) error {
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, r.key("dl", id))
		p.ZRem(ctx, r.key("dls"), id)
		p.ZRem(ctx, r.key("dls:expiry"), id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete dead letter %s: %w", id, err)
	}
	return nil
}

// --- counters ---

// Increment implements Store with INCR and PEXPIRE in one transaction.
func (r *Redis) Increment(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	k := r.key("count", key)
	var incr *redis.IntCmd
	if _, err := r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		incr = p.Incr(ctx, k)
		p.PExpire(ctx, k, ttl)
		return nil
	}); err != nil {
		return 0, fmt.Errorf("increment %s: %w", key, err)
	}
	return incr.Val(), nil
}

// --- idempotency ---

// ClaimIdempotencyKey implements Store with SET NX PX; ttl zero binds forever.
// The value is the run ID, then a space and the body digest when there is
// one (a value written before digests were kept is a run ID alone).
func (r *Redis) ClaimIdempotencyKey(ctx context.Context, key string, claim Claim, ttl time.Duration) (Claim, bool, error) {
	k := r.key("idem", key)
	v := claim.RunID
	if claim.BodyDigest != "" {
		v += " " + claim.BodyDigest
	}
	for range 3 {
		ok, err := r.c.SetNX(ctx, k, v, ttl).Result()
		if err != nil {
			return Claim{}, false, fmt.Errorf("claim idempotency key: %w", err)
		}
		if ok {
			return claim, true, nil
		}
		bound, err := r.c.Get(ctx, k).Result()
		if errors.Is(err, redis.Nil) {
			continue // expired between the two calls
		}
		if err != nil {
			return Claim{}, false, fmt.Errorf("claim idempotency key: %w", err)
		}
		id, digest, _ := strings.Cut(bound, " ")
		return Claim{RunID: id, BodyDigest: digest}, false, nil
	}
	return Claim{}, false, errors.New("claim idempotency key: binding keeps expiring")
}

// --- secrets ---
// A project's secrets are one hash, project:{name}:secrets, of name →
// packSecret. Every call goes to Redis (nothing is cached), so every agent
// sees a change as soon as the call that made it returns.

// PutSecret implements SecretStore with HSET.
func (r *Redis) PutSecret(ctx context.Context, project, name string, sealed []byte, updatedAt time.Time) error {
	if err := r.c.HSet(ctx, r.projectKey(project, "secrets"), name, packSecret(sealed, updatedAt)).Err(); err != nil {
		return fmt.Errorf("put secret %s of project %s: %w", name, project, err)
	}
	return nil
}

// Secret implements SecretStore with HGET.
func (r *Redis) Secret(ctx context.Context, project, name string) ([]byte, time.Time, error) {
	v, err := r.c.HGet(ctx, r.projectKey(project, "secrets"), name).Bytes()
	if errors.Is(err, redis.Nil) {
		err = ErrNotFound
	}
	var (
		sealed    []byte
		updatedAt time.Time
	)
	if err == nil {
		sealed, updatedAt, err = unpackSecret(v)
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("secret %s of project %s: %w", name, project, err)
	}
	return sealed, updatedAt, nil
}

// Secrets implements SecretStore with HGETALL, sorted by name.
func (r *Redis) Secrets(ctx context.Context, project string) ([]SecretInfo, error) {
	all, err := r.c.HGetAll(ctx, r.projectKey(project, "secrets")).Result()
	if err != nil {
		return nil, fmt.Errorf("list secrets of project %s: %w", project, err)
	}
	out := make([]SecretInfo, 0, len(all))
	for name, v := range all {
		_, updatedAt, err := unpackSecret([]byte(v))
		if err != nil {
			return nil, fmt.Errorf("list secrets of project %s: secret %s: %w", project, name, err)
		}
		out = append(out, SecretInfo{Name: name, UpdatedAt: updatedAt})
	}
	slices.SortFunc(out, func(a, b SecretInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// DeleteSecret implements SecretStore with HDEL.
func (r *Redis) DeleteSecret(ctx context.Context, project, name string) error {
	n, err := r.c.HDel(ctx, r.projectKey(project, "secrets"), name).Result()
	if err == nil && n == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("delete secret %s of project %s: %w", name, project, err)
	}
	return nil
}

// --- retention ---

// Sweep implements Store: it deletes runs older than MaxAge (by StartedAt) or
// beyond the newest MaxRuns, and dead letters whose ExpiresAt passed.
// Idempotency keys expire by themselves. One agent (the leader) calls it.
func (r *Redis) Sweep(ctx context.Context, now time.Time) error {
	ret := r.opts.Retention
	old, err := r.c.ZRangeByScore(ctx, r.key("runs:time"), &redis.ZRangeBy{
		Min: "-inf", Max: "(" + strconv.FormatInt(now.Add(-ret.MaxAge).UnixMilli(), 10)}).Result()
	if err != nil {
		return fmt.Errorf("sweep runs: %w", err)
	}
	if err := r.deleteRuns(ctx, old); err != nil {
		return err
	}
	n, err := r.c.ZCard(ctx, r.key("runs")).Result()
	if err != nil {
		return fmt.Errorf("sweep runs: %w", err)
	}
	if excess := n - int64(ret.MaxRuns); excess > 0 {
		ids, err := r.c.ZRange(ctx, r.key("runs"), 0, excess-1).Result()
		if err != nil {
			return fmt.Errorf("sweep runs: %w", err)
		}
		if err := r.deleteRuns(ctx, ids); err != nil {
			return err
		}
	}
	expired, err := r.c.ZRangeByScore(ctx, r.key("dls:expiry"), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10)}).Result()
	if err != nil {
		return fmt.Errorf("sweep dead letters: %w", err)
	}
	for _, id := range expired {
		if err := r.DeleteDeadLetter(ctx, id); err != nil {
			return fmt.Errorf("sweep: %w", err)
		}
	}
	return nil
}

// deleteRuns deletes the runs of ids and takes them out of every set.
func (r *Redis) deleteRuns(ctx context.Context, ids []string) error {
	for batch := range slices.Chunk(ids, 500) {
		members := make([]any, len(batch))
		keys := make([]string, len(batch))
		for i, id := range batch {
			members[i], keys[i] = id, r.key("run", id)
		}
		runs, err := r.runsOf(ctx, batch)
		if err != nil {
			return fmt.Errorf("sweep runs: %w", err)
		}
		_, err = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, run := range runs {
				for _, pst := range metaOf(run).postings() {
					if pst.value != "" {
						p.ZRem(ctx, r.runIndexKey(pst), run.ID)
					}
				}
			}
			for _, k := range keys {
				p.Del(ctx, k) // one key per command: keys may sit in different slots
			}
			p.ZRem(ctx, r.key("runs"), members...)
			p.ZRem(ctx, r.key("runs:time"), members...)
			return nil
		})
		if err != nil {
			return fmt.Errorf("sweep runs: %w", err)
		}
	}
	return nil
}

// Close implements Store: it ends every Watch and waits for the watchers.
// It does not close the Redis client. Idempotent.
func (r *Redis) Close() error {
	r.closeOnce.Do(func() {
		close(r.done)
		r.watchers.Wait()
	})
	return nil
}
