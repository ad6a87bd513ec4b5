package broker

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// recover loads the durable subscriptions and, for every queue with
// persisted messages, how many it holds per priority and the highest
// sequence number used. It reads no message: queues read their entries
// from the journal as they dispatch (fill), so opening a journal with a
// deep backlog takes as long as opening an empty one.
func (b *Broker) recover() error {
	var stale []jop // deletes what the journal holds for what no longer exists
	err := b.journal.view(func(db *bolt.DB) error {
		return db.View(func(tx *bolt.Tx) error {
			stale = b.recoverDurables(tx)
			entries := tx.Bucket(bucketNames[bucketEntries]).Cursor()
			return tx.Bucket(bucketNames[bucketCounts]).ForEach(func(k, v []byte) error {
				name, p, ok := splitLevel(k)
				if !ok {
					return fmt.Errorf("queue count %q: %w", k, errCorrupt)
				}
				q := b.recoveredQueue(name)
				if q == nil {
					stale = append(stale, jop{del: true, prefix: true, key: queuePrefix(name)})
					return nil
				}
				c := decodeCount(v)
				q.addDisk(p, int(c.entries), int(c.bytes), 0)
				b.seq = max(b.seq, lastSeq(entries, k))
				return nil
			})
		})
	})
	if err != nil || len(stale) == 0 {
		return err
	}
	return b.journal.view(func(db *bolt.DB) error {
		return db.Update(func(tx *bolt.Tx) error { return applyOps(tx, []*jreq{{ops: stale}}) })
	})
}

// recoverDurables registers the durable subscriptions of the journal and
// returns the ops that delete those that no longer parse, with their messages.
func (b *Broker) recoverDurables(tx *bolt.Tx) []jop {
	var stale []jop
	_ = tx.Bucket(bucketNames[bucketSubs]).ForEach(func(k, v []byte) error {
		topic, sel, _ := bytes.Cut(v, []byte{0})
		ds := &durableSub{key: string(k), topic: string(topic), sel: string(sel)}
		if _, err := b.newDurableQueue(ds); err != nil {
			b.log.Warn("broker: dropping durable subscription with bad selector", "key", ds.key, "err", err)
			stale = append(stale, jop{bucket: bucketSubs, del: true, key: bytes.Clone(k)},
				jop{del: true, prefix: true, key: queuePrefix(durablePrefix + ds.key)})
		}
		return nil
	})
	return stale
}

// recoveredQueue is the queue a journal name belongs to, nil for the queue
// of a durable subscription that no longer exists.
func (b *Broker) recoveredQueue(name string) *queue {
	if key, ok := cutPrefix(name, durablePrefix); ok {
		if ds := b.durables[key]; ds != nil {
			return ds.q
		}
		return nil
	}
	return b.queueFor(name)
}

// lastSeq is the sequence number of the last entry under level prefix lp.
func lastSeq(c *bolt.Cursor, lp []byte) uint64 {
	end := append(bytes.Clone(lp[:len(lp)-1]), lp[len(lp)-1]+1)
	k, _ := c.Seek(end)
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, lp) || len(k) != len(lp)+8 {
		return 0
	}
	return binary.BigEndian.Uint64(k[len(lp):])
}

// migrateLegacy moves the entries of a journal written before entries
// were keyed by priority into bucketEntries, counting them.
func migrateLegacy(tx *bolt.Tx) error {
	old := tx.Bucket(legacyMessages)
	if old == nil {
		return nil
	}
	var ops []jop
	err := old.ForEach(func(k, v []byte) error {
		if len(k) < 9 || k[len(k)-9] != 0 {
			return nil // not an entry key: dropped with the bucket
		}
		e, err := decodeEntry(v, false)
		if err != nil {
			return nil
		}
		key := entryKey(string(k[:len(k)-9]), e.priority, binary.BigEndian.Uint64(k[len(k)-8:]))
		ops = append(ops, jop{bucket: bucketEntries, key: key, val: bytes.Clone(v), msg: 1, size: e.size})
		return nil
	})
	if err != nil {
		return err
	}
	if err := applyOps(tx, []*jreq{{ops: ops}}); err != nil {
		return fmt.Errorf("moving legacy journal entries: %w", err)
	}
	return tx.DeleteBucket(legacyMessages)
}
