package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// trimChunk is how many runs one transaction deletes when a store opens
// with more runs than it retains (a file written before retention held at
// every write can hold hundreds of thousands).
const trimChunk = 50_000

// allocSize is how far beyond its high-water mark a growing file grows.
// bbolt's 16 MiB was up to 16 MiB of never-used file beside a store whose
// retained runs take ~10 MiB; a file grows only until retention holds, so
// growing it in small steps costs a few more truncate and fsync calls
// while it grows (40 for 10 MiB), none after.
const allocSize = 256 << 10

// minCompactBytes is the smallest file compaction at open considers.
const minCompactBytes = 1 << 20

// openBoltFile opens the file at path, creates the buckets, brings run
// history to this code's index format and to maxRuns, and compacts the file
// when more than half of it is free, so that an old, oversized store
// shrinks once.
func openBoltFile(path string, maxRuns, pageSize int) (*bolt.DB, error) {
	db, err := openBoltDB(path, pageSize)
	if err != nil {
		return nil, err
	}
	if err := prepareRuns(db, maxRuns); err != nil {
		db.Close()
		return nil, fmt.Errorf("prepare run history in %s: %w", path, err)
	}
	db, err = compactIfSparse(db, path, pageSize)
	if err != nil {
		return nil, fmt.Errorf("compact %s: %w", path, err)
	}
	return db, nil
}

// openBoltDB opens the file at path (made with pageSize if new) and
// creates the buckets.
func openBoltDB(path string, pageSize int) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoFreelistSync: true, PageSize: pageSize})
	if err != nil {
		return nil, fmt.Errorf("open bolt store %s: %w", path, err)
	}
	db.AllocSize = allocSize
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketProjects, bucketBundles, bucketStates, bucketRunGens,
			bucketDeadLetters, bucketIdempotency, bucketCounters, bucketSecrets} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("create buckets in %s: %w", path, err)
	}
	return db, nil
}

// prepareRuns brings the run history of a file written before generations
// into one (see upgradeTopLevel), posts any tail a crash left (the store
// opens as Close leaves it), then deletes runs beyond maxRuns in bounded
// transactions (maxRuns may have been lowered).
func prepareRuns(db *bolt.DB, maxRuns int) error {
	if err := upgradeTopLevel(db, maxRuns); err != nil {
		return err
	}
	if err := db.Update(postAll); err != nil {
		return err
	}
	return trimRuns(db, maxRuns)
}

// upgradeTopLevel brings the run buckets of a file written before
// generations (at the top level) to runIndexFormat, reindexing one written
// before the posting lists (after deleting its runs beyond maxRuns, so the
// rebuild is bounded by the retention: ~0.1 s for 10,000 runs), and moves
// them into the first generation.
func upgradeTopLevel(db *bolt.DB, maxRuns int) error {
	var legacy bool
	var format uint64
	if err := db.Update(func(tx *bolt.Tx) error {
		if legacy = tx.Bucket(bucketRuns) != nil; !legacy {
			return nil
		}
		for _, name := range [][]byte{bucketRunIndex, bucketRunPostings, bucketRunMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if v := tx.Bucket(bucketRunMeta).Get(metaFormat); len(v) == 8 {
			format = binary.BigEndian.Uint64(v)
		}
		return nil
	}); err != nil || !legacy {
		return err
	}
	switch format {
	case runIndexFormat:
	case 2, 3:
		if err := db.Update(func(tx *bolt.Tx) error { return upgradeIndex(tx, format) }); err != nil {
			return err
		}
	default:
		if err := trimUnindexed(db, maxRuns); err != nil {
			return err
		}
		if err := db.Update(reindexRuns); err != nil {
			return err
		}
	}
	return db.Update(moveIntoGen)
}

// moveIntoGen moves the top-level run buckets into a generation: the
// first, or after the last when there are generations already (a file
// opened by an earlier version in between); empty ones are deleted.
func moveIntoGen(tx *bolt.Tx) error {
	names := [][]byte{bucketRuns, bucketRunIndex, bucketRunPostings, bucketRunMeta}
	if k, _ := tx.Bucket(bucketRuns).Cursor().First(); k == nil {
		for _, name := range names {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		return nil
	}
	root := tx.Bucket(bucketRunGens)
	n := uint64(1)
	if k, _ := root.Cursor().Last(); len(k) == 8 {
		n = binary.BigEndian.Uint64(k) + 1
	}
	dst, err := root.CreateBucket(binary.BigEndian.AppendUint64(nil, n))
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := tx.MoveBucket(name, nil, dst); err != nil {
			return fmt.Errorf("move bucket %s into a generation: %w", name, err)
		}
	}
	return nil
}

// trimUnindexed deletes the oldest runs of a store without posting lists
// beyond the newest maxRuns, trimChunk per transaction.
func trimUnindexed(db *bolt.DB, maxRuns int) error {
	var excess int
	if err := db.View(func(tx *bolt.Tx) error {
		excess = tx.Bucket(bucketRunIndex).Stats().KeyN - maxRuns
		return nil
	}); err != nil {
		return err
	}
	if excess > maxRuns {
		return db.Update(func(tx *bolt.Tx) error { return keepNewestRuns(tx, maxRuns) })
	}
	for excess > 0 {
		err := db.Update(func(tx *bolt.Tx) error {
			index, runs := tx.Bucket(bucketRunIndex), tx.Bucket(bucketRuns)
			var doomed [][]byte
			c := index.Cursor()
			for k, _ := c.First(); k != nil && len(doomed) < min(excess, trimChunk); k, _ = c.Next() {
				doomed = append(doomed, append([]byte(nil), k...))
			}
			for _, k := range doomed {
				if err := index.Delete(k); err != nil {
					return err
				}
				if err := runs.Delete(k); err != nil {
					return err
				}
			}
			excess -= len(doomed)
			if len(doomed) == 0 {
				excess = 0
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// keepNewestRuns replaces the runs bucket with one holding only its newest
// maxRuns runs, and empties the index (reindexRuns rebuilds it): when most
// runs go, dropping the buckets frees their pages without deleting runs
// one by one (a 547 MiB file of 700,000 runs: 25 s by deletes).
func keepNewestRuns(tx *bolt.Tx, maxRuns int) error {
	var keys, values [][]byte
	c := tx.Bucket(bucketRuns).Cursor()
	for k, v := c.Last(); k != nil && len(keys) < maxRuns; k, v = c.Prev() {
		keys, values = append(keys, bytes.Clone(k)), append(values, bytes.Clone(v))
	}
	for _, name := range [][]byte{bucketRuns, bucketRunIndex} {
		if err := tx.DeleteBucket(name); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	runs := tx.Bucket(bucketRuns)
	for i := len(keys) - 1; i >= 0; i-- { // oldest first: appends
		if err := runs.Put(keys[i], values[i]); err != nil {
			return err
		}
	}
	return nil
}

// reindexRuns rebuilds the run index, the posting lists and the run count
// from the runs bucket, and marks the store as of runIndexFormat.
func reindexRuns(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketRunIndex, bucketRunPostings} {
		if err := tx.DeleteBucket(name); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	var ids [][]byte
	var metas []runMeta
	if err := tx.Bucket(bucketRuns).ForEach(func(k, v []byte) error {
		r, err := decodeRun(v)
		if err != nil {
			return fmt.Errorf("run %s: %w", k, err)
		}
		ids, metas = append(ids, append([]byte(nil), k...)), append(metas, metaOf(r))
		return nil
	}); err != nil {
		return err
	}
	t := newRunTx(topRunBuckets(tx), nil)
	t.count, t.tail = 0, 0
	if len(ids) > 0 {
		t.posted = ids[len(ids)-1]
	}
	for i, id := range ids {
		if err := t.putIndex(id, metas[i], runMeta{}, false); err != nil {
			return err
		}
		t.count++
	}
	if err := t.commit(); err != nil {
		return err
	}
	return tx.Bucket(bucketRunMeta).Put(metaFormat, binary.BigEndian.AppendUint64(nil, runIndexFormat))
}

// upgradeIndex brings the index of a store of format 2 or 3 to
// runIndexFormat: a store of format 2 has every run on its posting lists,
// so the posted mark goes on the newest; the message id lists of both are
// in chunks, which become one key per run (see isKeyed).
func upgradeIndex(tx *bolt.Tx, format uint64) error {
	if format == 2 {
		k, _ := tx.Bucket(bucketRunIndex).Cursor().Last()
		t := newRunTx(topRunBuckets(tx), nil)
		t.posted, t.tail = bytes.Clone(k), 0
		if err := t.commit(); err != nil {
			return err
		}
	}
	if err := keyLists(tx.Bucket(bucketRunPostings), fieldMessageID); err != nil {
		return fmt.Errorf("key message id lists: %w", err)
	}
	return tx.Bucket(bucketRunMeta).Put(metaFormat, binary.BigEndian.AppendUint64(nil, runIndexFormat))
}

// keyLists rewrites the chunks of field's lists that hold more than one id
// as one key per id (a chunk of one id is such a key already).
func keyLists(b *bolt.Bucket, field byte) error {
	var keys, values [][]byte
	c := b.Cursor()
	for k, v := c.Seek([]byte{field}); k != nil && k[0] == field; k, v = c.Next() {
		ids, err := decodeIDs(v)
		if err != nil {
			return fmt.Errorf("posting chunk %q: %w", k, err)
		}
		if len(ids) > 1 {
			keys, values = append(keys, bytes.Clone(k)), append(values, bytes.Clone(v))
		}
	}
	for i, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
		prefix, _ := splitPostingKey(k)
		ids, _ := decodeIDs(values[i])
		for _, id := range ids {
			if err := b.Put(append(bytes.Clone(prefix), id...), appendIDs(nil, [][]byte{id})); err != nil {
				return err
			}
		}
	}
	return nil
}

// postAll adds every run above a posted mark to its posting lists.
func postAll(tx *bolt.Tx) error {
	gs := openGens(tx, nil, 0)
	if err := gs.postAll(); err != nil {
		return err
	}
	_, err := gs.commit()
	return err
}

// compactIfSparse copies db into a new file when more than half of its
// file is free pages (bbolt reuses free pages but never shrinks a file),
// replaces the file with the copy (made with pageSize) and returns the copy
// opened. A failed copy leaves the file as it was.
func compactIfSparse(db *bolt.DB, path string, pageSize int) (*bolt.DB, error) {
	fi, err := os.Stat(path)
	if err != nil {
		db.Close()
		return nil, err
	}
	st := db.Stats() // pages freed by the last write are pending until the next one
	free := int64(st.FreePageN+st.PendingPageN) * int64(db.Info().PageSize)
	if fi.Size() < minCompactBytes || free <= fi.Size()/2 {
		return db, nil
	}
	tmp := path + ".compact"
	os.Remove(tmp) // a copy left by an interrupted compaction
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{NoFreelistSync: true, PageSize: pageSize})
	if err != nil {
		db.Close()
		return nil, err
	}
	err = bolt.Compact(dst, db, 64<<20)
	err = errors.Join(err, dst.Close(), db.Close())
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		// The copy is an optimisation (it needs disk space the full file
		// may have taken): the original, or the copy when only the
		// directory sync failed, opens as before.
		os.Remove(tmp)
	}
	return openBoltDB(path, pageSize)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
