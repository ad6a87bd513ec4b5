package broker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	bolt "go.etcd.io/bbolt"
)

const (
	bucketMsgs byte = iota // queue name, 0, seq(8) → encoded entry
	bucketSubs             // durable key → topic, 0, selector
)

var bucketNames = [...][]byte{bucketMsgs: []byte("messages"), bucketSubs: []byte("durables")}

// maxPendingJournalBytes bounds journal writes waiting for the committer;
// readers of producing connections wait above it (back-pressure).
const maxPendingJournalBytes = 32 << 20

// jop is one journal write.
type jop struct {
	bucket byte
	del    bool
	key    []byte
	val    []byte
}

type jreq struct {
	ops  []jop
	size int
	done func(error)
}

// journal is the bbolt store of persistent messages with a committer
// goroutine that writes every request queued since its last commit in one
// transaction and one fsync (group commit).
type journal struct {
	db *bolt.DB

	mu      sync.Mutex
	cond    *sync.Cond
	reqs    []*jreq
	pending int
	closing bool
	started bool // set by start before the broker is shared
	stopped chan struct{}
}

func openJournal(dir string) (*journal, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating broker data dir: %w", err)
	}
	db, err := bolt.Open(filepath.Join(dir, "broker.db"), 0o600, &bolt.Options{
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("opening broker journal: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, n := range bucketNames {
			if _, err := tx.CreateBucketIfNotExists(n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("creating journal buckets: %w", err)
	}
	j := &journal{db: db, stopped: make(chan struct{})}
	j.cond = sync.NewCond(&j.mu)
	return j, nil
}

// start runs the committer goroutine; close stops it.
func (j *journal) start(log *slog.Logger) {
	j.started = true
	go func() {
		defer close(j.stopped)
		j.commitLoop(log)
	}()
}

func (j *journal) commitLoop(log *slog.Logger) {
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
		err := j.db.Update(func(tx *bolt.Tx) error {
			bks := [len(bucketNames)]*bolt.Bucket{}
			for i, n := range bucketNames {
				bks[i] = tx.Bucket(n)
			}
			for _, r := range reqs {
				for _, op := range r.ops {
					var err error
					if op.del {
						err = bks[op.bucket].Delete(op.key)
					} else {
						err = bks[op.bucket].Put(op.key, op.val)
					}
					if err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			err = fmt.Errorf("writing broker journal: %w", err)
			log.Error("broker: journal commit failed", "err", err)
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
	}
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

// waitRoom blocks while too many bytes wait for the committer.
func (j *journal) waitRoom() {
	j.mu.Lock()
	for j.pending > maxPendingJournalBytes && !j.closing {
		j.cond.Wait()
	}
	j.mu.Unlock()
}

// get reads the body of the entry stored under key.
func (j *journal) get(key []byte) ([]byte, error) {
	var body []byte
	err := j.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketNames[bucketMsgs]).Get(key)
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
	if err := j.db.Close(); err != nil {
		return fmt.Errorf("closing broker journal: %w", err)
	}
	return nil
}

// entry encoding: version(1) id dest priority(1) expires deliveries nhdr {k v}... body
// strings are uvarint length + bytes, numbers are varints.

func encodeEntry(e *entry) []byte {
	n := 32 + len(e.id) + len(e.dest) + len(e.body)
	for _, h := range e.hdr {
		n += len(h) + 2
	}
	buf := make([]byte, 0, n)
	buf = append(buf, 1)
	buf = appendString(buf, e.id)
	buf = appendString(buf, e.dest)
	buf = append(buf, byte(e.priority))
	buf = binary.AppendVarint(buf, e.expires)
	buf = binary.AppendUvarint(buf, uint64(e.deliveries))
	buf = binary.AppendUvarint(buf, uint64(len(e.hdr)/2))
	for _, h := range e.hdr {
		buf = appendString(buf, h)
	}
	return append(buf, e.body...)
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

var errCorrupt = errors.New("corrupt journal record")

func decodeEntry(v []byte, withBody bool) (*entry, error) {
	r := bytes.NewReader(v)
	ver, err := r.ReadByte()
	if err != nil || ver != 1 {
		return nil, errCorrupt
	}
	str := func() (string, error) {
		n, err := binary.ReadUvarint(r)
		if err != nil || n > uint64(r.Len()) {
			return "", errCorrupt
		}
		b := make([]byte, n)
		_, _ = r.Read(b)
		return string(b), nil
	}
	e := &entry{persistent: true}
	if e.id, err = str(); err != nil {
		return nil, err
	}
	if e.dest, err = str(); err != nil {
		return nil, err
	}
	p, err := r.ReadByte()
	if err != nil || p > 9 {
		return nil, errCorrupt
	}
	e.priority = int(p)
	if e.expires, err = binary.ReadVarint(r); err != nil {
		return nil, errCorrupt
	}
	d, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, errCorrupt
	}
	e.deliveries = int(d)
	nh, err := binary.ReadUvarint(r)
	if err != nil || nh > uint64(r.Len()) {
		return nil, errCorrupt
	}
	e.hdr = make([]string, 0, 2*nh)
	for range 2 * nh {
		s, err := str()
		if err != nil {
			return nil, err
		}
		e.hdr = append(e.hdr, s)
	}
	e.size = r.Len()
	if withBody {
		e.body = make([]byte, r.Len())
		_, _ = r.Read(e.body)
	}
	return e, nil
}

// recover loads durable subscriptions and persisted messages into memory,
// keeping bodies in RAM up to MaxMemoryBytes.
func (b *Broker) recover() error {
	var stale [][]byte
	err := b.journal.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketNames[bucketSubs]).ForEach(func(k, v []byte) error {
			topic, sel, _ := bytes.Cut(v, []byte{0})
			ds := &durableSub{key: string(k), topic: string(topic), sel: string(sel)}
			if _, err := b.newDurableQueue(ds); err != nil {
				b.log.Warn("broker: dropping durable subscription with bad selector", "key", ds.key, "err", err)
				stale = append(stale, append([]byte{bucketSubs}, k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketNames[bucketMsgs]).ForEach(func(k, v []byte) error {
			if len(k) < 9 {
				return errCorrupt
			}
			name := string(k[:len(k)-9])
			seq := binary.BigEndian.Uint64(k[len(k)-8:])
			b.seq = max(b.seq, seq)
			var q *queue
			if key, ok := cutPrefix(name, durablePrefix); ok {
				if ds := b.durables[key]; ds != nil {
					q = ds.q
				}
			} else {
				q = b.queueFor(name)
			}
			if q == nil {
				stale = append(stale, append([]byte{bucketMsgs}, k...))
				return nil
			}
			inMem := b.memBytes < b.cfg.MaxMemoryBytes
			e, err := decodeEntry(v, inMem)
			if err != nil {
				return fmt.Errorf("message %q: %w", k, err)
			}
			e.key = append([]byte(nil), k...)
			b.account(e)
			q.pushBack(e)
			return nil
		})
	})
	if err != nil || len(stale) == 0 {
		return err
	}
	return b.journal.db.Update(func(tx *bolt.Tx) error {
		for _, k := range stale {
			if err := tx.Bucket(bucketNames[k[0]]).Delete(k[1:]); err != nil {
				return err
			}
		}
		return nil
	})
}
