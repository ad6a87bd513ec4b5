package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Buckets of the journal.
const (
	bucketEntries    byte = iota // queue name, 0, priority(1), seq(8) → encoded entry
	bucketSubs                   // durable key → topic, 0, selector
	bucketCounts                 // queue name, 0, priority(1) → entries(uvarint) body bytes(uvarint)
	bucketDeliveries             // entry key → delivery count (uvarint), for entries given back at least once
)

var bucketNames = [...][]byte{
	bucketEntries:    []byte("entries"),
	bucketSubs:       []byte("durables"),
	bucketCounts:     []byte("counts"),
	bucketDeliveries: []byte("deliveries"),
}

// legacyMessages is the bucket of journals written before entries were
// keyed by priority (queue name, 0, seq(8)); open moves its entries.
var legacyMessages = []byte("messages")

// maxPendingJournalBytes bounds journal writes waiting for the committer;
// readers of producing connections wait above it (back-pressure). Each
// byte waiting is held about three times while a burst is written (the
// encoded entry, the next batch queued behind it, bbolt's dirty pages), and
// the Go heap grows to twice what is live: 4 MiB keeps a producer burst
// into a deep backlog near 64 MiB of RSS (16 MiB: 115–130 MiB), and still
// amortises one fsync over thousands of messages.
const maxPendingJournalBytes = 4 << 20

// journalPageSize is the page size of a new journal file. Larger pages keep
// the free-page list that each commit writes short after a deep backlog
// drains (a 1 GiB file has 65,536 pages of 16 KiB, not 262,144 of 4 KiB).
const journalPageSize = 16 << 10

// entriesFill is how full bbolt packs the pages of the entries bucket:
// keys are appended in order per queue and priority, so pages split at the
// end and can be packed nearly full (bbolt's default, half, doubles the file).
const entriesFill = 0.9

// jop is one journal write.
type jop struct {
	bucket byte
	del    bool
	key    []byte
	val    []byte
	// prefix, with del, deletes every key of bucketEntries, bucketCounts
	// and bucketDeliveries that starts with key (a removed queue).
	prefix bool
	// msg is +1 for an entry stored, -1 for one deleted (bucketEntries
	// only): with size, its body bytes, it keeps bucketCounts right.
	msg  int
	size int
}

type jreq struct {
	ops  []jop
	size int
	done func(error)
}

// journal is the bbolt store of persistent messages with a committer
// goroutine that writes every request queued since its last commit in one
// transaction and one fsync (group commit). Besides the entries it keeps,
// in the same transactions, how many entries and body bytes each queue and
// priority holds, so that opening it reads counts, not entries.
type journal struct {
	path string
	log  *slog.Logger

	dbMu sync.RWMutex // write-held only to swap db when compacting
	db   *bolt.DB

	mu      sync.Mutex
	cond    *sync.Cond
	reqs    []*jreq
	pending int
	closing bool
	started bool // set by start before the broker is shared
	stopped chan struct{}

	release pageRelease // committer-owned: mapped pages given back after reads
	compact compactPolicy
}

func openJournal(dir string, log *slog.Logger) (*journal, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating broker data dir: %w", err)
	}
	j := &journal{path: filepath.Join(dir, "broker.db"), log: log, stopped: make(chan struct{})}
	j.cond = sync.NewCond(&j.mu)
	if err := j.compactAtOpen(); err != nil {
		return nil, err
	}
	db, err := openBolt(j.path)
	if err != nil {
		return nil, err
	}
	j.db = db
	if err := db.Update(initBuckets); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("creating journal buckets: %w", err)
	}
	return j, nil
}

// openBolt opens the journal file. The free-page list is written with each
// commit so that opening a large journal does not walk every page to
// rebuild it.
func openBolt(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		FreelistType: bolt.FreelistMapType,
		PageSize:     journalPageSize,
	})
	if err != nil {
		return nil, fmt.Errorf("opening broker journal: %w", err)
	}
	return db, nil
}

// initBuckets creates the buckets and moves the entries of a journal
// written before entries were keyed by priority.
func initBuckets(tx *bolt.Tx) error {
	for _, n := range bucketNames {
		if _, err := tx.CreateBucketIfNotExists(n); err != nil {
			return err
		}
	}
	return migrateLegacy(tx)
}

// start runs the committer goroutine; close stops it.
func (j *journal) start() {
	j.started = true
	go func() {
		defer close(j.stopped)
		j.commitLoop()
	}()
}

func (j *journal) commitLoop() {
	for {
		j.mu.Lock()
		for len(j.reqs) == 0 && !j.closing {
			j.cond.Wait()
		}
		reqs := j.reqs
		j.reqs = nil
		j.mu.Unlock()
		if len(reqs) == 0 {
			return // closing and drained
		}
		var err error
		if hasOps(reqs) {
			err = j.view(func(db *bolt.DB) error {
				return db.Update(func(tx *bolt.Tx) error { return applyOps(tx, reqs) })
			})
		}
		if err != nil {
			err = fmt.Errorf("writing broker journal: %w", err)
			j.log.Error("broker: journal commit failed", "err", err)
		}
		size := 0
		for _, r := range reqs {
			size += r.size
		}
		j.mu.Lock()
		j.pending -= size
		j.cond.Broadcast()
		j.mu.Unlock()
		for _, r := range reqs {
			if r.done != nil {
				r.done(err)
			}
		}
		j.afterCommit()
	}
}

// hasOps reports whether any of reqs writes (wake-ups and barriers do not).
func hasOps(reqs []*jreq) bool {
	for _, r := range reqs {
		if len(r.ops) > 0 {
			return true
		}
	}
	return false
}

// submit queues ops for the next group commit; done (may be nil) runs on the
// committer goroutine after the commit. It never blocks.
func (j *journal) submit(ops []jop, done func(error)) {
	r := &jreq{ops: ops, done: done}
	for _, op := range ops {
		r.size += len(op.key) + len(op.val)
	}
	j.mu.Lock()
	if j.closing {
		j.mu.Unlock()
		if done != nil {
			done(errors.New("broker journal closed"))
		}
		return
	}
	j.reqs = append(j.reqs, r)
	j.pending += r.size
	j.cond.Broadcast()
	j.mu.Unlock()
}

// idle waits up to timeout until everything submitted so far is written
// and its callbacks have run; it reports whether that happened.
func (j *journal) idle(timeout time.Duration) bool {
	done := make(chan struct{})
	j.submit(nil, func(error) { close(done) })
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// waitRoom blocks while too many bytes wait for the committer.
func (j *journal) waitRoom() {
	j.mu.Lock()
	for j.pending > maxPendingJournalBytes && !j.closing {
		j.cond.Wait()
	}
	j.mu.Unlock()
}

// view runs fn with the current database, which compaction does not swap
// meanwhile.
func (j *journal) view(fn func(db *bolt.DB) error) error {
	j.dbMu.RLock()
	defer j.dbMu.RUnlock()
	return fn(j.db)
}

// get reads the body of the entry stored under key.
func (j *journal) get(key []byte) ([]byte, error) {
	var body []byte
	err := j.view(func(db *bolt.DB) error {
		return db.View(func(tx *bolt.Tx) error {
			v := tx.Bucket(bucketNames[bucketEntries]).Get(key)
			if v == nil {
				return errors.New("message not in journal")
			}
			e, err := decodeEntry(v, true)
			if err != nil {
				return err
			}
			body = e.body
			return nil
		})
	})
	return body, err
}

// close writes what is queued, stops the committer and closes the database.
func (j *journal) close() error {
	j.mu.Lock()
	j.closing = true
	j.cond.Broadcast()
	j.mu.Unlock()
	if j.started {
		<-j.stopped
	}
	if j.compact.wake != nil {
		j.compact.wake.Stop()
	}
	if err := j.db.Close(); err != nil {
		return fmt.Errorf("closing broker journal: %w", err)
	}
	return nil
}
