package broker

import (
	"bytes"
	"container/list"
	"encoding/binary"

	bolt "go.etcd.io/bbolt"
)

// windowEntries is how many pending entries a queue keeps in memory at
// most (besides those delivered and not yet acknowledged) when it has more
// persisted: the rest stay on disk only, counted, and are read back in
// order as the window empties. Selectors see the window: a consumer whose
// selector matches nothing in it waits until other consumers move it on
// (as with ActiveMQ's maxPageSize).
const windowEntries = 1000

// level holds the pending entries of one priority of a queue.
type level struct {
	list.List // in memory, in dispatch order
	// disk counts the persisted entries of this priority not in memory
	// (stored, or on their way to the journal), diskBytes their bodies;
	// they all have a sequence number of at least next, and every entry
	// in memory or delivered one below it.
	disk      int
	diskBytes int
	next      uint64
}

// addDisk counts n entries of priority p, of size body bytes in all, as
// kept on disk only, the first of them with sequence number first.
func (q *queue) addDisk(p, n, size int, first uint64) {
	lv := &q.levels[p]
	if lv.disk == 0 {
		lv.next = first
	}
	lv.disk += n
	lv.diskBytes += size
	q.disk += n
	q.pending += n
	q.bytes += size
}

// enqueue adds a new entry to q: in memory, or, when q already keeps
// entries of its priority on disk or its window is full, on disk only (a
// persisted entry; others always stay in memory).
func (b *Broker) enqueue(q *queue, e *entry, bt *batch) {
	if e.key != nil && (q.levels[e.priority].disk > 0 || q.mem >= windowEntries) {
		_, _, seq, _ := splitKey(e.key)
		q.addDisk(e.priority, 1, e.size, seq)
		e.body = nil // its journal write holds a copy; fill reads it back
		if n := len(bt.spilled); n == 0 || bt.spilled[n-1] != q {
			bt.spilled = append(bt.spilled, q)
		}
		return
	}
	b.account(e)
	q.pushBack(e)
}

// topMem is the highest priority with entries in memory, -1 for none.
func (q *queue) topMem() int {
	for p := len(q.levels) - 1; p >= 0; p-- {
		if q.levels[p].Len() > 0 {
			return p
		}
	}
	return -1
}

// needsFill reports whether q should read entries from disk: its window
// is less than half full, or a priority above every one in memory waits
// on disk.
func (q *queue) needsFill() bool {
	if q.disk == 0 {
		return false
	}
	if q.mem < windowEntries/2 {
		return true
	}
	top := q.topMem()
	for p := len(q.levels) - 1; p > top; p-- {
		if q.levels[p].disk > 0 {
			return true
		}
	}
	return false
}

// fill reads entries of q kept on disk into memory, highest priority
// first: up to the window, and a quarter window beyond it for a priority
// above every one in memory. Called with b.mu held.
func (b *Broker) fill(q *queue) {
	if !q.needsFill() || b.journal == nil {
		return
	}
	top := q.topMem()
	room := windowEntries - q.mem
	budget := b.cfg.MaxMemoryBytes - b.memBytes
	keep := func(size int) bool { // bodies read stay in memory within MaxMemoryBytes
		if int64(size) > budget {
			return false
		}
		budget -= int64(size)
		return true
	}
	for p := len(q.levels) - 1; p >= 0; p-- {
		lv := &q.levels[p]
		if lv.disk == 0 {
			continue
		}
		n := room
		if p > top {
			n = max(n, windowEntries/4)
		}
		if n <= 0 {
			break
		}
		got, err := b.journal.readLevel(q.name, p, lv.next, n, keep)
		if err != nil {
			b.log.Error("broker: reading queued messages from the journal", "queue", q.dest, "err", err)
			return
		}
		for _, e := range got {
			_, _, seq, _ := splitKey(e.key)
			lv.next = seq + 1
			lv.disk--
			lv.diskBytes -= e.size
			q.disk--
			q.pending--
			q.bytes -= e.size
			b.account(e)
			q.pushBack(e)
		}
		room -= len(got)
	}
}

// readLevel reads up to n stored entries of queue name and priority p, from
// sequence number from on, with their bodies while keep allows, and their
// delivery counts.
func (j *journal) readLevel(name string, p int, from uint64, n int, keep func(size int) bool) ([]*entry, error) {
	var out []*entry
	lp := levelPrefix(name, p)
	err := j.view(func(db *bolt.DB) error {
		return db.View(func(tx *bolt.Tx) error {
			deliveries := tx.Bucket(bucketNames[bucketDeliveries])
			counted, _ := deliveries.Cursor().First()
			c := tx.Bucket(bucketNames[bucketEntries]).Cursor()
			read := 0
			for k, v := c.Seek(binary.BigEndian.AppendUint64(bytes.Clone(lp), from)); k != nil && len(out) < n && bytes.HasPrefix(k, lp); k, v = c.Next() {
				e, err := decodeEntry(v, keep(len(v)))
				if err != nil {
					return err
				}
				e.key = bytes.Clone(k)
				if counted != nil {
					if d := deliveries.Get(k); d != nil {
						cnt, _ := binary.Uvarint(d)
						e.deliveries, e.countSaved = int(cnt), true
					}
				}
				read += len(v)
				out = append(out, e)
			}
			j.release.read(read)
			return nil
		})
	})
	return out, err
}
