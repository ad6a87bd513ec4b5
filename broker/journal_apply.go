package broker

import (
	"bytes"
	"encoding/binary"

	bolt "go.etcd.io/bbolt"
)

// levelCount is what bucketCounts holds for one queue and priority.
type levelCount struct{ entries, bytes int64 }

// applyOps writes the ops of reqs in order in tx and keeps bucketCounts in
// step with the entries stored and deleted.
func applyOps(tx *bolt.Tx, reqs []*jreq) error {
	var bks [len(bucketNames)]*bolt.Bucket
	for i, n := range bucketNames {
		bks[i] = tx.Bucket(n)
	}
	bks[bucketEntries].FillPercent = entriesFill
	deltas := map[string]levelCount{}
	for _, r := range reqs {
		for _, op := range r.ops {
			if err := applyOp(bks, op, deltas); err != nil {
				return err
			}
		}
	}
	return addCounts(bks[bucketCounts], deltas)
}

func applyOp(bks [len(bucketNames)]*bolt.Bucket, op jop, deltas map[string]levelCount) error {
	switch {
	case op.prefix:
		for _, b := range []byte{bucketEntries, bucketCounts, bucketDeliveries} {
			if err := deletePrefix(bks[b], op.key); err != nil {
				return err
			}
		}
		for k := range deltas {
			if len(k) >= len(op.key) && k[:len(op.key)] == string(op.key) {
				delete(deltas, k)
			}
		}
		return nil
	case op.del:
		if err := bks[op.bucket].Delete(op.key); err != nil {
			return err
		}
	default:
		if err := bks[op.bucket].Put(op.key, op.val); err != nil {
			return err
		}
	}
	if op.msg != 0 {
		lk := string(levelKey(op.key))
		d := deltas[lk]
		d.entries += int64(op.msg)
		d.bytes += int64(op.msg * op.size)
		deltas[lk] = d
	}
	return nil
}

// deletePrefix deletes every key of b that starts with prefix.
func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// addCounts adds deltas to the counts stored in b, deleting a count that
// reaches zero entries.
func addCounts(b *bolt.Bucket, deltas map[string]levelCount) error {
	for k, d := range deltas {
		if d.entries == 0 && d.bytes == 0 {
			continue
		}
		c := decodeCount(b.Get([]byte(k)))
		c.entries += d.entries
		c.bytes += d.bytes
		var err error
		if c.entries <= 0 {
			err = b.Delete([]byte(k))
		} else {
			err = b.Put([]byte(k), encodeCount(c))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func encodeCount(c levelCount) []byte {
	buf := binary.AppendUvarint(nil, uint64(c.entries))
	return binary.AppendUvarint(buf, uint64(max(c.bytes, 0)))
}

func decodeCount(v []byte) levelCount {
	n, w := binary.Uvarint(v)
	if w <= 0 {
		return levelCount{}
	}
	b, w2 := binary.Uvarint(v[w:])
	if w2 <= 0 {
		return levelCount{entries: int64(n)}
	}
	return levelCount{entries: int64(n), bytes: int64(b)}
}
