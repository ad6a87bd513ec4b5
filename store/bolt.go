package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrClosed is returned by a store's methods after Close.
var ErrClosed = errors.New("store closed")

// BoltOptions configures a Bolt store. The zero value uses every default.
type BoltOptions struct {
	// Retention bounds run history (see Retention for its defaults).
	Retention Retention
	// DeadLetterRetention gives dead letters stored without ExpiresAt an
	// expiry of FailedAt+DeadLetterRetention; zero keeps such letters forever.
	DeadLetterRetention time.Duration
	// FlushInterval is how long buffered runs may wait; zero means 200ms.
	FlushInterval time.Duration
	// MaxBatch is the buffered-run count that triggers an early flush; zero
	// means 512. PutRun writes through itself when 4×MaxBatch runs wait,
	// so it bounds the runs held in memory and the pages a write adds
	// before retention frees as many. historybench, 1M webhook runs as
	// fast as the store takes them, with the agent's GC settings (GOGC
	// 400): peak RSS 76 MiB at 512 against 250 MiB at 2048, store file
	// 15 against 21 MiB, the same CPU per run, 1.2× the time (more
	// fsyncs; still ~75,000 runs/s). BenchmarkFlushBatch (listener runs,
	// explicit flushes) gives 512 1.1–1.5× the CPU per run of 2048.
	MaxBatch int
	// PageSize is the page size of a new store file, a power of two from
	// 4 KiB; zero means 16 KiB. A file keeps the size it was made with,
	// unless compaction at open copies it.
	PageSize int
	// OnFlush, when set, is told of each write of buffered runs (a group
	// commit): how many runs it wrote, how long the write took, its fsync
	// included, and its error. It is called on the writing goroutine and
	// must return quickly; nil means nobody is told.
	OnFlush func(runs int, took time.Duration, err error)
	// SyncLog makes Flush append the buffered runs to a write-ahead log
	// (see runLog), one fdatasync, instead of waiting for a bbolt commit
	// (two fdatasyncs and whole pages); the flusher writes them to bbolt
	// at its own pace. It suits a caller that flushes at every run, as
	// run_durability sync does. Open replays a log left by a crash
	// whatever this says.
	SyncLog bool
	// OnLogAppend, when set, is told of each append to the run log (a
	// group commit of the runs that Flush calls wait for): how many runs
	// it wrote, how long it took, its fdatasync included, and its error.
	// It is called with the log locked and must return quickly.
	OnLogAppend func(runs int, took time.Duration, err error)
}

// Bucket names.
var (
	bucketProjects    = []byte("projects")    // name → JSON projectMeta
	bucketBundles     = []byte("bundles")     // name\x00version(4 bytes) → bundle
	bucketStates      = []byte("states")      // key → 0|1
	bucketRuns        = []byte("runs")        // id → JSON storedRun
	bucketRunIndex    = []byte("runindex")    // id → packed runMeta (retention, re-puts, Since)
	bucketDeadLetters = []byte("deadletters") // id → JSON DeadLetter
	bucketIdempotency = []byte("idempotency") // key → JSON idemRecord
	bucketCounters    = []byte("counters")    // key → count (8 bytes) expiry (8 bytes, Unix ns)
	bucketSecrets     = []byte("secrets")     // project → bucket: name → packSecret
)

// Bolt is a Store in one bbolt file, for a single agent. It is safe for
// concurrent use. Runs are buffered in memory (latest version per ID wins)
// and written in batches by two goroutines that Close stops: the flusher,
// at a background CPU priority, every FlushInterval and when MaxBatch runs
// wait; the waited writer at once when a caller of Flush waits (group
// commit: the runs put while one batch is written form the next one, so
// callers waiting together share one fsync). It also implements Watcher with
// in-process notifications of its own writes.
type Bolt struct {
	db   *bolt.DB
	opts BoltOptions
	hub  hub

	mu       sync.Mutex // guards the fields below
	pending  *runBatch  // runs not yet handed to a flush
	flushing *runBatch  // runs in the write under way; nil when none is
	spare    *runBatch  // the last batch written, emptied for reuse; nil when none
	closed   bool
	// Batches are numbered: pendingGen is the number of the batch that
	// PutRun adds to, durableGen the last one written, failedGen the last
	// one whose write failed (with flushErr). flushed is closed, and
	// replaced, when a write ends.
	pendingGen, durableGen, failedGen uint64
	flushErr                          error
	flushed                           chan struct{}

	flushMu sync.Mutex // one flush at a time, so versions land in order
	// flushBuf and flushOrder are a flush's buffers, kept for the next one
	// (guarded by flushMu): bbolt holds the keys and values put only until
	// its transaction ends. Allocating them per flush was a seventh of
	// the bytes a listener delivery allocates.
	flushBuf   []byte
	flushOrder []int

	// log is the write-ahead log (nil without SyncLog). putSeq numbers
	// the runs put; unlogged holds those put since the last append to the
	// log that bbolt does not hold yet, in put order; boltSeq is the
	// putSeq up to which every run is in bbolt. Guarded by mu; log.mu is
	// taken before mu.
	log      *runLog
	putSeq   uint64
	unlogged []loggedRun
	boltSeq  uint64

	// examined counts the stored runs Runs looked at (a test reads it to
	// see that a query uses the posting lists).
	examined atomic.Int64

	kick      chan struct{} // to the flusher: MaxBatch runs wait
	want      chan struct{} // to the waited writer: a caller of Flush waits
	stop      chan struct{}
	writers   sync.WaitGroup // the flusher and the waited writer
	closeOnce sync.Once
	closeErr  error
}

var (
	_ Store   = (*Bolt)(nil)
	_ Watcher = (*Bolt)(nil)
)

// loggedRun is a run waiting for the write-ahead log, with its put
// sequence number.
type loggedRun struct {
	seq uint64
	run Run
}

type projectMeta struct {
	Active   int              `json:"active"`
	Versions []ProjectVersion `json:"versions"`
}

type idemRecord struct {
	RunID      string    `json:"runId"`
	BodyDigest string    `json:"bodyDigest,omitempty"`
	ExpiresAt  time.Time `json:"expiresAt,omitzero"`
}

// defaultPageSize is the page size of a new store file (an existing file
// keeps its own). Runs dominate the writes and arrive in id order, so a
// large batch appends full pages: at 64 KiB a flush of 2,048 listener runs
// writes a sixteenth of the pages (and pwrite calls) it writes at 4 KiB,
// and the B+tree has fewer branch levels to update. But each write also
// rewrites whole pages where it changes a few bytes (the newest run and
// index pages, their branches, the bucket roots): a webhook's small group
// commit writes and syncs every byte of them. 16 KiB is between the two
// (see BenchmarkFlushBatch and BenchmarkDurablePutRun for both).
const defaultPageSize = 16 << 10

// flushBytesPerRun sizes a flush's buffer: a listener run's key, record,
// index entry and posting keys take ~850 bytes.
const flushBytesPerRun = 896

// maxKeptFlushBuf bounds the buffer kept between flushes (a batch of 2,048
// listener runs takes ~1.3 MB).
const maxKeptFlushBuf = 4 << 20

// OpenBolt opens (creating if needed) the store at path and starts its
// writers. It blocks up to 5 s when another process holds the file.
func OpenBolt(path string, opts BoltOptions) (*Bolt, error) {
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 200 * time.Millisecond
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if opts.PageSize <= 0 {
		opts.PageSize = defaultPageSize
	}
	opts.Retention = opts.Retention.withDefaults()
	db, err := openBoltFile(path, opts.Retention.MaxRuns, opts.PageSize)
	if err != nil {
		return nil, err
	}
	lastLog, err := replayRunLogs(db, path, opts.Retention.MaxRuns)
	if err != nil {
		db.Close()
		return nil, err
	}
	var log *runLog
	if opts.SyncLog {
		if log, err = openRunLog(path, lastLog+1); err != nil {
			db.Close()
			return nil, err
		}
	}
	s := &Bolt{
		log:     log,
		db:      db,
		opts:    opts,
		pending: newRunBatch(),
		kick:    make(chan struct{}, 1),
		want:    make(chan struct{}, 1),
		flushed: make(chan struct{}),
		stop:    make(chan struct{}),

		pendingGen: 1,
	}
	s.writers.Add(2)
	go s.flusher()
	go s.waitedWriter()
	return s, nil
}

// Watch implements Watcher: it reports this store's own project and state
// writes. It does not block.
func (s *Bolt) Watch(ctx context.Context) <-chan Change { return s.hub.subscribe(ctx) }

// --- projects ---

func bundleKey(name string, version int) []byte {
	k := make([]byte, 0, len(name)+5)
	k = append(k, name...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint32(k, uint32(version))
}

func getMeta(tx *bolt.Tx, name string) (projectMeta, bool, error) {
	var m projectMeta
	v := tx.Bucket(bucketProjects).Get([]byte(name))
	if v == nil {
		return m, false, nil
	}
	if err := json.Unmarshal(v, &m); err != nil {
		return m, false, fmt.Errorf("decode project %s: %w", name, err)
	}
	return m, true, nil
}

func putMeta(tx *bolt.Tx, name string, m projectMeta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode project %s: %w", name, err)
	}
	return tx.Bucket(bucketProjects).Put([]byte(name), b)
}

// SaveProjectVersion implements Store. It blocks until the version is durable.
func (s *Bolt) SaveProjectVersion(ctx context.Context, name string, bundle []byte, note string) (ProjectVersion, error) {
	var pv ProjectVersion
	err := s.db.Update(func(tx *bolt.Tx) error {
		m, _, err := getMeta(tx, name)
		if err != nil {
			return err
		}
		next := 1
		if n := len(m.Versions); n > 0 {
			next = m.Versions[n-1].Version + 1
		}
		pv = ProjectVersion{Project: name, Version: next, CreatedAt: time.Now().UTC(), Note: note, Size: len(bundle)}
		m.Versions = append(m.Versions, pv)
		m.Active = next
		if err := tx.Bucket(bucketBundles).Put(bundleKey(name, next), bundle); err != nil {
			return err
		}
		return putMeta(tx, name, m)
	})
	if err != nil {
		return ProjectVersion{}, fmt.Errorf("save project %s: %w", name, err)
	}
	s.hub.publish(Change{Kind: ChangeProject, Key: name})
	return pv, nil
}

// ProjectVersion implements Store. Version 0 means the active version.
func (s *Bolt) ProjectVersion(ctx context.Context, name string, version int) (ProjectVersion, []byte, error) {
	var (
		pv     ProjectVersion
		bundle []byte
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		m, ok, err := getMeta(tx, name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("project %s: %w", name, ErrNotFound)
		}
		if version == 0 {
			version = m.Active
		}
		i := slices.IndexFunc(m.Versions, func(v ProjectVersion) bool { return v.Version == version })
		if i < 0 {
			return fmt.Errorf("project %s version %d: %w", name, version, ErrNotFound)
		}
		pv = m.Versions[i]
		bundle = bytes.Clone(tx.Bucket(bucketBundles).Get(bundleKey(name, version)))
		return nil
	})
	if err != nil {
		return ProjectVersion{}, nil, fmt.Errorf("read project version: %w", err)
	}
	return pv, bundle, nil
}

// Projects implements Store.
func (s *Bolt) Projects(ctx context.Context) ([]ProjectInfo, error) {
	var out []ProjectInfo
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketProjects).ForEach(func(k, v []byte) error {
			var m projectMeta
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("decode project %s: %w", k, err)
			}
			out = append(out, ProjectInfo{Name: string(k), ActiveVersion: m.Active, Versions: m.Versions})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	return out, nil
}

// SetActiveVersion implements Store; an unknown project or version gives an
// error wrapping ErrNotFound.
func (s *Bolt) SetActiveVersion(ctx context.Context, name string, version int) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		m, ok, err := getMeta(tx, name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("project %s: %w", name, ErrNotFound)
		}
		if !slices.ContainsFunc(m.Versions, func(v ProjectVersion) bool { return v.Version == version }) {
			return fmt.Errorf("project %s version %d: %w", name, version, ErrNotFound)
		}
		m.Active = version
		return putMeta(tx, name, m)
	})
	if err != nil {
		return fmt.Errorf("set active version: %w", err)
	}
	s.hub.publish(Change{Kind: ChangeProject, Key: name})
	return nil
}

// DeleteProject implements Store; it blocks until the deletion is durable.
func (s *Bolt) DeleteProject(ctx context.Context, name string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		m, ok, err := getMeta(tx, name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("project %s: %w", name, ErrNotFound)
		}
		for _, v := range m.Versions {
			if err := tx.Bucket(bucketBundles).Delete(bundleKey(name, v.Version)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketProjects).Delete([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("delete project: %w", err)
	}
	s.hub.publish(Change{Kind: ChangeProject, Key: name})
	return nil
}

// --- states ---

// State implements Store.
func (s *Bolt) State(ctx context.Context, key string) (enabled, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketStates).Get([]byte(key))
		ok = v != nil
		enabled = ok && len(v) == 1 && v[0] == 1
		return nil
	})
	if err != nil {
		return false, false, fmt.Errorf("read state %s: %w", key, err)
	}
	return enabled, ok, nil
}

// SetState implements Store.
func (s *Bolt) SetState(ctx context.Context, key string, enabled bool) error {
	v := []byte{0}
	if enabled {
		v[0] = 1
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketStates).Put([]byte(key), v) }); err != nil {
		return fmt.Errorf("set state %s: %w", key, err)
	}
	s.hub.publish(Change{Kind: ChangeState, Key: key})
	return nil
}

// --- runs ---

// PutRun implements Store. It buffers the run and returns without I/O,
// unless 4×MaxBatch runs are already waiting; then it flushes first.
func (s *Bolt) PutRun(ctx context.Context, r Run) error {
	if r.ID == "" {
		return errors.New("put run: empty id")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("put run %s: %w", r.ID, ErrClosed)
	}
	s.pending.put(r)
	s.putSeq++
	if s.log != nil {
		s.unlogged = append(s.unlogged, loggedRun{s.putSeq, r})
	}
	n := s.pending.len()
	s.mu.Unlock()
	switch {
	case n >= 4*s.opts.MaxBatch:
		return s.flushBolt(ctx)
	case n >= s.opts.MaxBatch:
		s.kickFlusher()
	}
	return nil
}

// kickFlusher asks the flusher to write the pending batch now; it does
// not block (a kick during a write makes the next write follow at once).
func (s *Bolt) kickFlusher() { poke(s.kick) }

// askWrite asks the waited writer to write the pending batch now, for a
// caller that waits for it; it does not block.
func (s *Bolt) askWrite() { poke(s.want) }

// poke sends on a channel of capacity 1 unless a send already waits.
func poke(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Buffered reports how many runs wait in memory for a write. It does
// not block on I/O.
func (s *Bolt) Buffered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending.len() + s.flushing.len()
}

// buffered returns the buffered version of id, if any.
func (s *Bolt) buffered(id string) (Run, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.pending.get(id); ok {
		return r, true
	}
	return s.flushing.get(id)
}

// Run implements Store: buffered runs are found too.
func (s *Bolt) Run(ctx context.Context, id string) (Run, error) {
	if r, ok := s.buffered(id); ok {
		return r, nil
	}
	var (
		r     Run
		found bool
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		var v []byte
		for _, g := range readGens(tx) {
			if v = g.runs.Get([]byte(id)); v != nil {
				break
			}
		}
		if v == nil {
			return nil
		}
		found = true
		var err error
		r, err = decodeRun(v)
		return err
	})
	if err != nil {
		return Run{}, fmt.Errorf("read run %s: %w", id, err)
	}
	if !found {
		return Run{}, fmt.Errorf("run %s: %w", id, ErrNotFound)
	}
	return r, nil
}

// Runs implements Store: buffered and stored runs merged, newest first.
// Stored runs are found through the posting lists of f's set fields (see
// runCandidates): a value no run has answers at once, and only runs on
// every list are decoded, however long the history.
func (s *Bolt) Runs(ctx context.Context, f RunFilter) ([]Run, error) {
	limit := f.PageSize()
	s.mu.Lock()
	inBuffer := make(map[string]struct{}, s.pending.len()+s.flushing.len())
	var out []Run
	for _, b := range []*runBatch{s.pending, s.flushing} {
		for _, r := range b.list() {
			if _, seen := inBuffer[r.ID]; seen {
				continue // pending is newer than flushing
			}
			inBuffer[r.ID] = struct{}{}
			if f.Matches(r) {
				out = append(out, r)
			}
		}
	}
	s.mu.Unlock()

	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		var examined int
		out, examined, err = storedRuns(tx, f, limit, inBuffer, out)
		s.examined.Add(int64(examined))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	slices.SortFunc(out, func(a, b Run) int { return strings.Compare(b.ID, a.ID) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Flush implements Store: it blocks until every run put before the call is
// durable, or ctx ends. With SyncLog it appends them to the write-ahead log
// (see logRuns); without, the waited writer writes the batch to bbolt at once
// (bbolt fsyncs each write). Either way concurrent callers share one write.
// An error says the write holding the caller's runs failed; they stay
// buffered for the next try. Goroutine-safe; with nothing buffered it
// returns at once.
func (s *Bolt) Flush(ctx context.Context) error {
	if s.log != nil {
		return s.logRuns(ctx)
	}
	return s.flushBolt(ctx)
}

// logRuns makes the runs put so far durable in the write-ahead log: one
// append and fdatasync for the runs that callers waiting meanwhile put
// too (group commit), unless bbolt or an earlier append holds them. A log
// that failed a write is not used again: bbolt takes over.
func (s *Bolt) logRuns(ctx context.Context) error {
	s.mu.Lock()
	target, closed := s.putSeq, s.closed
	s.mu.Unlock()
	if closed {
		return s.flushBolt(ctx)
	}
	// flushBolt waits for a writer, which takes log.mu: not under it.
	if err := s.appendLog(target); err != nil {
		if ferr := s.flushBolt(ctx); ferr != nil {
			return errors.Join(err, ferr)
		}
	}
	return nil
}

// appendLog appends the runs not yet durable to the log, unless bbolt or
// an earlier append made the runs up to put number target durable.
func (s *Bolt) appendLog(target uint64) error {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	if s.log.err != nil {
		return s.log.err
	}
	s.mu.Lock()
	if s.log.durable >= target || s.boltSeq >= target {
		s.mu.Unlock()
		return nil
	}
	batch, seq := s.unlogged, s.putSeq
	s.unlogged = nil
	s.mu.Unlock()
	began := time.Now()
	err := s.log.append(batch, seq)
	if s.opts.OnLogAppend != nil {
		s.opts.OnLogAppend(len(batch), time.Since(began), err)
	}
	if err != nil {
		s.mu.Lock()
		s.unlogged = append(batch, s.unlogged...)
		s.mu.Unlock()
		return err
	}
	return nil
}

// flushBolt blocks until every run put before the call is written to
// bbolt, or ctx ends.
func (s *Bolt) flushBolt(ctx context.Context) error {
	s.mu.Lock()
	target := s.pendingGen // the batch holding the runs put so far
	if s.pending.len() == 0 {
		target-- // they are in the write under way, if any, or durable
	}
	closed := s.closed
	s.mu.Unlock()
	if closed {
		// No writers any more: write on this goroutine.
		if err := s.writeBatch(); err != nil {
			return err
		}
	}
	s.askWrite()
	return s.waitDurable(ctx, target)
}

// waitDurable blocks until batch gen is written, its write failed, or ctx
// ends.
func (s *Bolt) waitDurable(ctx context.Context, gen uint64) error {
	for {
		s.mu.Lock()
		done, failed, err, ch := s.durableGen >= gen, s.failedGen >= gen, s.flushErr, s.flushed
		s.mu.Unlock()
		switch {
		case done:
			return nil
		case failed:
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for buffered runs to be written: %w", ctx.Err())
		}
	}
}

// writeBatch writes the pending runs in one transaction, blocking until
// they are durable, and wakes the callers of Flush waiting for them. The
// writers call it, and Close after stopping them.
func (s *Bolt) writeBatch() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	empty := s.pending.len() == 0
	s.mu.Unlock()
	if empty {
		return nil
	}
	// The log files ended here hold runs put before the batch is taken:
	// once it is in bbolt, they can go.
	ended, rotated := s.rotateLog()
	s.mu.Lock()
	batch, gen, seq := s.pending, s.pendingGen, s.putSeq
	s.pending, s.spare = s.spare, nil
	if s.pending == nil {
		s.pending = newRunBatch()
	}
	s.flushing = batch
	s.pendingGen++
	s.mu.Unlock()

	// IDs grow with time: writing them in order appends to the B+tree (no
	// mid-page inserts), and full pages suit append-mostly keys.
	order := batch.inIDOrder(s.flushOrder)
	// The batch's keys and values are written into one buffer (bbolt keeps
	// them until the transaction ends): allocating four per run was a sixth
	// of a listener delivery's allocations. A slice taken from it stays
	// valid when a later append moves the buffer.
	buf := s.flushBuf[:0]
	if need := batch.len() * flushBytesPerRun; cap(buf) < need {
		buf = make([]byte, 0, need)
	}
	began := time.Now()
	err := s.db.Update(func(tx *bolt.Tx) error {
		gs := openGens(tx, buf, s.opts.Retention.MaxRuns)
		for _, i := range order {
			if err := gs.put(batch.runs[i]); err != nil {
				return err
			}
		}
		// Retention holds at every write, within a generation: the oldest
		// go in a transaction that adds successors, and later writes reuse
		// their pages, so the file stays near the retained runs' size.
		if err := gs.retain(s.opts.Retention.MaxRuns); err != nil {
			return err
		}
		var err error
		buf, err = gs.commit()
		return err
	})
	if s.opts.OnFlush != nil {
		s.opts.OnFlush(batch.len(), time.Since(began), err)
	}
	s.flushOrder = order
	if cap(buf) <= maxKeptFlushBuf {
		s.flushBuf = buf[:0]
	}

	if err := s.batchWritten(batch, gen, seq, err); err != nil {
		return err
	}
	if rotated { // outside mu: log.mu is taken before it
		return s.log.removeThrough(ended)
	}
	return nil
}

// batchWritten records the end of batch gen's write, which err failed, and
// wakes its waiters; seq is the last put it holds.
func (s *Bolt) batchWritten(batch *runBatch, gen, seq uint64, err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushing = nil
	close(s.flushed)
	s.flushed = make(chan struct{})
	if err != nil {
		// Keep the runs for the next attempt unless a newer version arrived.
		for _, r := range batch.runs {
			if _, newer := s.pending.get(r.ID); !newer {
				s.pending.put(r)
			}
		}
		s.failedGen, s.flushErr = gen, fmt.Errorf("flush %d runs: %w", batch.len(), err)
		return s.flushErr
	}
	batch.reset()
	s.spare = batch
	s.durableGen = gen
	s.boltSeq = seq
	i := 0
	for i < len(s.unlogged) && s.unlogged[i].seq <= seq {
		i++
	}
	s.unlogged = slices.Delete(s.unlogged, 0, i)
	return nil
}

// rotateLog starts the write-ahead log's next file unless the open one is
// empty, and returns the highest file number that the batch about to be
// taken covers; ok is false without a usable log.
func (s *Bolt) rotateLog() (ended uint64, ok bool) {
	if s.log == nil {
		return 0, false
	}
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	if s.log.err != nil {
		return 0, false
	}
	if !s.log.written {
		return s.log.n - 1, true
	}
	n, err := s.log.rotate()
	return n, err == nil
}

// flusher writes buffered runs every FlushInterval and when MaxBatch is
// reached, until Close, on a thread of background CPU priority (see
// backgroundThread): nobody waits for these writes, and on a busy machine
// they yield to deliveries and webhooks instead of delaying them. When
// the flusher falls behind, PutRun waits for a write once 4×MaxBatch runs
// are buffered, and the waited writer does that one.
func (s *Bolt) flusher() {
	defer s.writers.Done()
	backgroundThread()
	t := time.NewTicker(s.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.kick:
		}
		// A failed write keeps its runs buffered; the next tick retries.
		_ = s.writeBatch()
	}
}

// waitedWriter writes buffered runs when a caller of Flush (or PutRun,
// past 4×MaxBatch) waits for them, until Close, at the process's own CPU
// priority: a caller waiting on the flusher's background thread would
// wait behind every busy thread of the machine.
func (s *Bolt) waitedWriter() {
	defer s.writers.Done()
	for {
		select {
		case <-s.stop:
			return
		case <-s.want:
			gatherCommit()
		}
		// A failed write keeps its runs buffered and reports to the
		// waiters; the next attempt is theirs or the flusher's.
		_ = s.writeBatch()
	}
}

// gatherCommit lets the goroutines that are ready to run go first, so that
// the runs they are about to put join the commit a waiter asked for: under
// load a commit then carries more runs (fewer fsyncs per run); with
// nothing else ready it returns at once.
func gatherCommit() {
	for range 2 {
		runtime.Gosched()
	}
}

// --- dead letters ---

// PutDeadLetter implements Store.
func (s *Bolt) PutDeadLetter(ctx context.Context, d DeadLetter) error {
	if d.ID == "" {
		return errors.New("put dead letter: empty id")
	}
	if d.ExpiresAt.IsZero() && s.opts.DeadLetterRetention > 0 {
		d.ExpiresAt = d.FailedAt.Add(s.opts.DeadLetterRetention)
	}
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encode dead letter %s: %w", d.ID, err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketDeadLetters).Put([]byte(d.ID), b) }); err != nil {
		return fmt.Errorf("put dead letter %s: %w", d.ID, err)
	}
	return nil
}

// DeadLetter implements Store.
func (s *Bolt) DeadLetter(ctx context.Context, id string) (DeadLetter, error) {
	var d DeadLetter
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketDeadLetters).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("dead letter %s: %w", id, ErrNotFound)
		}
		return json.Unmarshal(v, &d)
	})
	if err != nil {
		return DeadLetter{}, fmt.Errorf("read dead letter: %w", err)
	}
	return d, nil
}

// DeadLetters implements Store: newest (highest ID) first.
func (s *Bolt) DeadLetters(ctx context.Context, f DeadLetterFilter) ([]DeadLetter, error) {
	var out []DeadLetter
	limit := f.limit()
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDeadLetters).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var d DeadLetter
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("decode dead letter %s: %w", k, err)
			}
			if f.Listener == "" || d.Listener == f.Listener {
				out = append(out, d)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// DeleteDeadLetter implements Store; deleting a missing letter is not an error.
func (s *Bolt) DeleteDeadLetter(ctx context.Context, id string) error {
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketDeadLetters).Delete([]byte(id)) }); err != nil {
		return fmt.Errorf("delete dead letter %s: %w", id, err)
	}
	return nil
}

// --- idempotency ---

// ClaimIdempotencyKey implements Store. Expired bindings are replaced; ttl
// zero binds forever. It blocks until the binding is durable.
func (s *Bolt) ClaimIdempotencyKey(ctx context.Context, key string, claim Claim, ttl time.Duration) (Claim, bool, error) {
	bound, created := claim, true
	now := time.Now()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIdempotency)
		if v := b.Get([]byte(key)); v != nil {
			var rec idemRecord
			if err := json.Unmarshal(v, &rec); err == nil && (rec.ExpiresAt.IsZero() || now.Before(rec.ExpiresAt)) {
				bound, created = Claim{RunID: rec.RunID, BodyDigest: rec.BodyDigest}, false
				return nil
			}
		}
		rec := idemRecord{RunID: claim.RunID, BodyDigest: claim.BodyDigest}
		if ttl > 0 {
			rec.ExpiresAt = now.Add(ttl)
		}
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return b.Put([]byte(key), v)
	})
	if err != nil {
		return Claim{}, false, fmt.Errorf("claim idempotency key: %w", err)
	}
	return bound, created, nil
}

// --- counters ---

// Increment implements Store.
func (s *Bolt) Increment(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	var n int64
	now := time.Now()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCounters)
		n = 1
		if c, exp, ok := unpackCounter(b.Get([]byte(key))); ok && now.UnixNano() < exp {
			n = c + 1
		}
		return b.Put([]byte(key), packCounter(n, now.Add(ttl).UnixNano()))
	})
	if err != nil {
		return 0, fmt.Errorf("increment %s: %w", key, err)
	}
	return n, nil
}

func packCounter(n, expires int64) []byte {
	v := binary.BigEndian.AppendUint64(nil, uint64(n))
	return binary.BigEndian.AppendUint64(v, uint64(expires))
}

func unpackCounter(v []byte) (n, expires int64, ok bool) {
	if len(v) != 16 {
		return 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(v)), int64(binary.BigEndian.Uint64(v[8:])), true
}

// --- secrets ---

// PutSecret implements SecretStore in its own transaction (not through the
// run buffer): it blocks until the secret is on disk.
func (s *Bolt) PutSecret(ctx context.Context, project, name string, sealed []byte, updatedAt time.Time) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketSecrets).CreateBucketIfNotExists([]byte(project))
		if err != nil {
			return err
		}
		return b.Put([]byte(name), packSecret(sealed, updatedAt))
	})
	if err != nil {
		return fmt.Errorf("put secret %s of project %s: %w", name, project, err)
	}
	return nil
}

// Secret implements SecretStore.
func (s *Bolt) Secret(ctx context.Context, project, name string) ([]byte, time.Time, error) {
	var (
		sealed    []byte
		updatedAt time.Time
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		b := secretsOf(tx, project)
		if b == nil || b.Get([]byte(name)) == nil {
			return ErrNotFound
		}
		var err error
		sealed, updatedAt, err = unpackSecret(b.Get([]byte(name)))
		sealed = bytes.Clone(sealed) // valid only inside the transaction
		return err
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("secret %s of project %s: %w", name, project, err)
	}
	return sealed, updatedAt, nil
}

// Secrets implements SecretStore: sorted by name (bbolt keeps keys in
// byte order).
func (s *Bolt) Secrets(ctx context.Context, project string) ([]SecretInfo, error) {
	out := []SecretInfo{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := secretsOf(tx, project)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			_, updatedAt, err := unpackSecret(v)
			if err != nil {
				return fmt.Errorf("secret %s: %w", k, err)
			}
			out = append(out, SecretInfo{Name: string(k), UpdatedAt: updatedAt})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list secrets of project %s: %w", project, err)
	}
	return out, nil
}

// DeleteSecret implements SecretStore; a project's bucket goes with its
// last secret.
func (s *Bolt) DeleteSecret(ctx context.Context, project, name string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := secretsOf(tx, project)
		if b == nil || b.Get([]byte(name)) == nil {
			return ErrNotFound
		}
		if err := b.Delete([]byte(name)); err != nil {
			return err
		}
		if k, _ := b.Cursor().First(); k == nil {
			return tx.Bucket(bucketSecrets).DeleteBucket([]byte(project))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete secret %s of project %s: %w", name, project, err)
	}
	return nil
}

// secretsOf returns the bucket of project's secrets, nil when it has none
// (bbolt refuses an empty bucket name: "" has none either).
func secretsOf(tx *bolt.Tx, project string) *bolt.Bucket {
	if project == "" {
		return nil
	}
	return tx.Bucket(bucketSecrets).Bucket([]byte(project))
}

// --- retention ---

// Sweep implements Store: it flushes, then deletes runs older than MaxAge
// (by StartedAt) or beyond the newest MaxRuns, dead letters whose ExpiresAt
// passed, and expired idempotency keys and counters. Runs go in bounded
// transactions, so that run flushes (and the requests waiting on them) are
// not held up by one long delete. It blocks; the leader calls it.
func (s *Bolt) Sweep(ctx context.Context, now time.Time) error {
	if err := s.flushBolt(ctx); err != nil { // what it sweeps is in bbolt
		return fmt.Errorf("sweep: %w", err)
	}
	if err := s.sweepRuns(ctx, now.Add(-s.opts.Retention.MaxAge)); err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := sweepJSON(tx.Bucket(bucketDeadLetters), func(v []byte) bool {
			var d DeadLetter
			return json.Unmarshal(v, &d) != nil || (!d.ExpiresAt.IsZero() && !now.Before(d.ExpiresAt))
		}); err != nil {
			return err
		}
		if err := sweepJSON(tx.Bucket(bucketIdempotency), func(v []byte) bool {
			var rec idemRecord
			return json.Unmarshal(v, &rec) != nil || (!rec.ExpiresAt.IsZero() && !now.Before(rec.ExpiresAt))
		}); err != nil {
			return err
		}
		return sweepJSON(tx.Bucket(bucketCounters), func(v []byte) bool {
			_, exp, ok := unpackCounter(v)
			return !ok || now.UnixNano() >= exp
		})
	})
	if err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	return nil
}

// sweepScan is how many run index entries one sweep transaction examines.
const sweepScan = 10_000

// sweepRuns deletes the runs beyond the newest MaxRuns (flushes leave at
// most a generation of them), trimChunk per transaction, then those
// started before cutoff, generation by generation.
func (s *Bolt) sweepRuns(ctx context.Context, cutoff time.Time) error {
	if err := trimRuns(s.db, s.opts.Retention.MaxRuns); err != nil {
		return err
	}
	var keys [][]byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRunGens).ForEach(func(k, v []byte) error {
			if v == nil {
				keys = append(keys, bytes.Clone(k))
			}
			return nil
		})
	}); err != nil {
		return err
	}
	for _, key := range keys {
		if err := s.sweepGen(ctx, key, cutoff); err != nil {
			return err
		}
	}
	return nil
}

// sweepGen deletes the runs of generation key started before cutoff,
// examining sweepScan index entries per transaction. A generation whose
// runs all started before cutoff is dropped whole.
func (s *Bolt) sweepGen(ctx context.Context, key []byte, cutoff time.Time) error {
	var after []byte // the last entry examined
	for done := false; !done; {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := s.db.Update(func(tx *bolt.Tx) error {
			root := tx.Bucket(bucketRunGens)
			b := root.Bucket(key)
			if b == nil {
				done = true
				return nil
			}
			t := newRunTx(genBuckets(b), nil)
			whole := after == nil
			var doomed [][]byte
			doomed, after, done = expiredRuns(t.index, after, cutoff)
			if whole && done && len(doomed) > 0 && len(doomed) == t.count {
				return root.DeleteBucket(key)
			}
			for _, k := range doomed {
				if err := t.delete(k); err != nil {
					return err
				}
			}
			return t.commit()
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// expiredRuns returns the ids of up to sweepScan index entries after the
// id after (from the first when nil) whose run started before cutoff, the
// last id examined, and whether the index ended.
func expiredRuns(index *bolt.Bucket, after []byte, cutoff time.Time) (doomed [][]byte, last []byte, done bool) {
	c := index.Cursor()
	k, v := c.First()
	if after != nil {
		if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
			k, v = c.Next()
		}
	}
	for n := 0; k != nil && n < sweepScan; k, v = c.Next() {
		n++
		last = k
		if m, err := unpackMeta(v); err != nil || m.startedAt.Before(cutoff) {
			doomed = append(doomed, bytes.Clone(k))
		}
	}
	return doomed, bytes.Clone(last), k == nil // keys are valid only inside the transaction
}

// sweepJSON deletes the entries of b whose value expired reports true.
func sweepJSON(b *bolt.Bucket, expired func(v []byte) bool) error {
	var doomed [][]byte
	if err := b.ForEach(func(k, v []byte) error {
		if expired(v) {
			doomed = append(doomed, bytes.Clone(k))
		}
		return nil
	}); err != nil {
		return err
	}
	for _, k := range doomed {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Close implements Store: it stops the writers, flushes buffered runs, ends
// every Watch and closes the file. Idempotent; later calls return the first
// call's result.
func (s *Bolt) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.stop)
		s.writers.Wait()
		ferr := s.writeBatch()
		if ferr == nil {
			// The next open finds every run on its posting lists.
			ferr = s.db.Update(postAll)
		}
		var lerr error
		if s.log != nil {
			lerr = s.log.close()
			if ferr == nil && lerr == nil {
				// Every run put is in bbolt: the log has nothing to replay.
				lerr = s.log.removeThrough(s.log.n)
			}
		}
		s.hub.close()
		s.closeErr = errors.Join(ferr, lerr, s.db.Close())
	})
	return s.closeErr
}
