package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// appendMetaFormat1 is an index entry as stores wrote it before the
// posting lists: no outcome, trigger or schedule.
func appendMetaFormat1(b []byte, r Run) []byte {
	for _, s := range [...]string{r.Project, r.Operation, r.Status, r.MessageID} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return binary.AppendVarint(b, r.StartedAt.UnixNano())
}

// A store written before the posting lists opens: its runs beyond MaxRuns
// go, the others are reindexed, and every filter finds them.
func TestBoltReindexesAStoreOfTheFormerFormat(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "opsrunner.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		runs, err := tx.CreateBucket(bucketRuns)
		if err != nil {
			return err
		}
		index, err := tx.CreateBucket(bucketRunIndex)
		if err != nil {
			return err
		}
		for i := range 80 {
			r := Run{ID: fmt.Sprintf("run-%03d", i), Project: "p", Operation: "op", Trigger: "listener",
				Status: StatusSucceeded, Outcome: OutcomeCommitted, StartedAt: time.Now()}
			if i%10 == 0 {
				r.Outcome = OutcomeDeadLettered
			}
			b, err := encodeRun(r)
			if err != nil {
				return err
			}
			if err := runs.Put([]byte(r.ID), b); err != nil {
				return err
			}
			if err := index.Put([]byte(r.ID), appendMetaFormat1(nil, r)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := OpenBolt(path, BoltOptions{Retention: Retention{MaxRuns: 50}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		f     RunFilter
		n     int
		first string
	}{
		{RunFilter{Limit: 100}, 50, "run-079"},
		{RunFilter{Outcome: OutcomeDeadLettered}, 5, "run-070"},
		{RunFilter{Trigger: "listener", Project: "p", Outcome: OutcomeCommitted, Limit: 100}, 45, "run-079"},
	} {
		got, err := s.Runs(t.Context(), tc.f)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tc.n || got[0].ID != tc.first {
			t.Errorf("%+v: %d runs, want %d from %s", tc.f, len(got), tc.n, tc.first)
		}
	}
	// Retention counts the reindexed runs: one more run pushes one out
	// (at the sweep: a flush lets a trim slack wait).
	if err := s.PutRun(t.Context(), Run{ID: "run-080", Project: "p", StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.Sweep(t.Context(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Runs(t.Context(), RunFilter{Limit: 100}); len(got) != 50 || got[49].ID != "run-031" {
		t.Errorf("after one more run: %d runs, the oldest %s; want 50 from run-031", len(got), got[len(got)-1].ID)
	}
}

// A store of format 2 (every run on its posting lists, no posted mark)
// opens with its mark on its newest run: its runs and the runs put after
// are found by every filter, and nothing is posted twice.
func TestBoltMarksAFormat2StorePosted(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "opsrunner.db")
	put := func(s *Bolt, from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			r := Run{ID: fmt.Sprintf("run-%04d", i), Project: "p", Operation: fmt.Sprintf("op%d", i%2), StartedAt: time.Now()}
			if err := s.PutRun(t.Context(), r); err != nil {
				t.Fatal(err)
			}
		}
	}
	s, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	put(s, 0, 700)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { // as format 2 left it
		if err := asTopLevel(tx); err != nil {
			return err
		}
		meta := tx.Bucket(bucketRunMeta)
		return errors.Join(meta.Delete(metaPosted), meta.Delete(metaTail),
			meta.Put(metaFormat, binary.BigEndian.AppendUint64(nil, 2)))
	})
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}

	if s, err = OpenBolt(path, BoltOptions{}); err != nil {
		t.Fatal(err)
	}
	put(s, 700, 800)
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Runs(t.Context(), RunFilter{Operation: "op1", Limit: 1000}); err != nil || len(got) != 400 || got[0].ID != "run-0799" {
		t.Errorf("op1 runs: %d (%v), want 400 from run-0799", len(got), err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := CountPostings(path); err != nil || n != 800*2 {
		t.Errorf("%d postings (%v), want 1,600", n, err)
	}
}

// asTopLevel moves the run buckets of the store's one generation to the
// top level, where a file written before generations holds them.
func asTopLevel(tx *bolt.Tx) error {
	root := tx.Bucket(bucketRunGens)
	first, _ := root.Cursor().First()
	last, _ := root.Cursor().Last()
	if first == nil || !bytes.Equal(first, last) {
		return fmt.Errorf("want one run generation, have %q to %q", first, last)
	}
	key := bytes.Clone(first)
	g := root.Bucket(key)
	for _, name := range [][]byte{bucketRuns, bucketRunIndex, bucketRunPostings, bucketRunMeta} {
		if err := tx.MoveBucket(name, g, nil); err != nil {
			return err
		}
	}
	return root.DeleteBucket(key)
}
