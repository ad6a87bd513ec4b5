package broker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The journal gives space back in two ways. Pages of the file that reads
// mapped into the process are released once a second (they count in its
// resident memory, and a drained backlog would otherwise leave the whole
// file resident). And the file is compacted — its live pages copied to a
// new file that replaces it — when more than half of it is free: when it
// opens, and online when what is live is small enough to copy quickly
// (commits wait for the copy).
const (
	compactMinFile = 16 << 20 // files smaller than this are left as they are
	compactMaxLive = 16 << 20 // online compaction copies at most this much
	compactEvery   = 5 * time.Second
	releaseEvery   = time.Second
)

// pageRelease paces the release of mapped pages.
type pageRelease struct {
	unread atomic.Int64 // bytes of entries read since the last release
	last   time.Time    // committer only
}

func (r *pageRelease) read(n int) { r.unread.Add(int64(n)) }

// releaseRead releases the mapped pages sooner than releaseEvery when this
// much was read since (a fast drain reads ~100 MiB a second).
const releaseRead = 32 << 20

// compactPolicy paces the checks for online compaction (committer only).
// A check put off by the pacing is made later by a wake-up, so that a
// journal drained by its last commits is compacted without more traffic.
type compactPolicy struct {
	last time.Time
	wake *time.Timer // pending wake-up, nil when none
}

// afterCommit runs on the committer after each commit.
func (j *journal) afterCommit() {
	now := time.Now()
	if now.Sub(j.release.last) >= releaseEvery || j.release.unread.Load() >= releaseRead {
		j.release.last = now
		j.release.unread.Store(0)
		if err := j.view(releaseMapped); err != nil {
			j.log.Debug("broker: releasing journal pages", "err", err)
		}
	}
	if wait := compactEvery - now.Sub(j.compact.last); wait > 0 {
		if j.compact.wake == nil {
			j.compact.wake = time.AfterFunc(wait, func() { j.submit(nil, nil) })
		}
		return
	}
	j.compact.last, j.compact.wake = now, nil
	j.maybeCompact()
}

// maybeCompact compacts the journal online when more than half of it is
// free and little enough is live to copy quickly.
func (j *journal) maybeCompact() {
	size, live := space(j.db)
	if size < compactMinFile || 2*live > size || live > compactMaxLive {
		return
	}
	start := time.Now()
	if err := j.compactOnline(); err != nil {
		j.log.Error("broker: compacting the journal", "err", err)
		return
	}
	after, _ := space(j.db)
	j.log.Info("broker: journal compacted", "bytes_before", size, "bytes_after", after, "took", time.Since(start))
}

// space is the size of db's file and how many of its bytes are live: its
// pages up to the high-water mark less the free ones (bbolt grows the file
// ahead of the pages it uses; that tail counts as free).
func space(db *bolt.DB) (size, live int64) {
	if fi, err := os.Stat(db.Path()); err == nil {
		size = fi.Size()
	}
	var used int64
	_ = db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
	st := db.Stats()
	return size, max(used-int64(st.FreePageN+st.PendingPageN)*int64(db.Info().PageSize), 0)
}

// compactOnline replaces the journal's file with a compacted copy, holding
// readers off while it copies.
func (j *journal) compactOnline() error {
	j.dbMu.Lock()
	defer j.dbMu.Unlock()
	tmp := j.path + ".compact"
	if err := copyCompacted(j.db, tmp); err != nil {
		return err
	}
	if err := j.db.Close(); err != nil {
		return fmt.Errorf("closing the journal to replace it: %w", err)
	}
	renameErr := replaceFile(tmp, j.path)
	db, err := openBolt(j.path)
	if err != nil {
		return errors.Join(renameErr, err) // the broker cannot go on without its journal
	}
	j.db = db
	return renameErr
}

// compactAtOpen compacts the journal file, when it exists and more than
// half of it is free, before the broker opens it.
func (j *journal) compactAtOpen() error {
	fi, err := os.Stat(j.path)
	if err != nil || fi.Size() < compactMinFile {
		return nil
	}
	db, err := openBolt(j.path)
	if err != nil {
		return err
	}
	size, live := space(db)
	if 2*live > size {
		return db.Close()
	}
	tmp := j.path + ".compact"
	err = copyCompacted(db, tmp)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return replaceFile(tmp, j.path)
}

// copyCompacted writes the live contents of src to a new file at path.
func copyCompacted(src *bolt.DB, path string) error {
	_ = os.Remove(path)
	dst, err := openBolt(path)
	if err != nil {
		return err
	}
	err = bolt.Compact(dst, src, 16<<20)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("compacting the broker journal: %w", err)
	}
	return nil
}

// replaceFile renames from over to and makes the rename durable.
func replaceFile(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("replacing the broker journal: %w", err)
	}
	d, err := os.Open(filepath.Dir(to))
	if err != nil {
		return fmt.Errorf("syncing the broker data dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing the broker data dir: %w", err)
	}
	return nil
}
