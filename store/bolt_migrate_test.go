package store

import (
	"encoding/binary"
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
