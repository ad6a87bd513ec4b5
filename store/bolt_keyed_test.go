package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// keyedRun is run i of the message id tests: every third run handles the
// message "shared" (a redelivered message), the others a message of their
// own.
func keyedRun(i int) Run {
	r := Run{ID: fmt.Sprintf("run-%04d", i), Project: "p", Status: StatusSucceeded,
		MessageID: fmt.Sprintf("msg-%d", i), StartedAt: time.Now()}
	if i%3 == 0 {
		r.MessageID = "shared"
	}
	if i%2 == 0 {
		r.Status = StatusFailed
	}
	return r
}

// checkMessageFilters compares queries by message id (alone, with a status,
// paged with Before) with the model (newest last).
func checkMessageFilters(t *testing.T, when string, s *Bolt, model []Run) {
	t.Helper()
	last := model[len(model)-1]
	checkFiltersAgainst(t, when, s, model, []RunFilter{
		{MessageID: "shared"}, {MessageID: "shared", Status: StatusFailed}, {MessageID: "shared", Before: model[len(model)/2].ID},
		{MessageID: last.MessageID}, {MessageID: last.MessageID, Status: StatusRunning}, {MessageID: "nosuch"},
	})
}

// A store of format 3 (message id lists in chunks of many ids) opens with
// one key per run on its message id lists; queries by message id find the
// same runs before and after new runs, changed message ids and a trim, and
// every run stays on each of its lists once.
func TestBoltKeysTheMessageIDListsOfAFormat3Store(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "opsrunner.db")
	s, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var model []Run
	put := func(s *Bolt, from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			model = append(model, keyedRun(i))
			if err := s.PutRun(t.Context(), model[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	put(s, 0, 600)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := chunkMessageLists(path); err != nil {
		t.Fatal(err)
	}

	opts := BoltOptions{Retention: Retention{MaxRuns: 500}, FlushInterval: time.Hour}
	if s, err = OpenBolt(path, opts); err != nil {
		t.Fatal(err)
	}
	checkMessageFilters(t, "opened", s, model[100:]) // retention keeps the newest 500
	put(s, 600, 700)
	for _, i := range []int{300, 301, 650} { // below the mark, and in the tail
		model[i].MessageID = "shared"
		if err := s.PutRun(t.Context(), model[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(s.Flush(t.Context()), s.Sweep(t.Context(), time.Now())); err != nil {
		t.Fatal(err)
	}
	checkMessageFilters(t, "written", s, model[200:])
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := checkKeyedLists(path); err != nil {
		t.Error(err)
	}
	if n, err := CountPostings(path); err != nil || n != 500*3 {
		t.Errorf("%d postings (%v), want 1,500", n, err)
	}
}

// chunkMessageLists rewrites the store at path as format 3 left it: each
// message id list in chunks of up to chunkIDs ids.
func chunkMessageLists(path string) error {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := asTopLevel(tx); err != nil {
			return err
		}
		b := tx.Bucket(bucketRunPostings)
		lists := map[string][][]byte{}
		var keys [][]byte
		c := b.Cursor()
		for k, _ := c.Seek([]byte{fieldMessageID}); k != nil && k[0] == fieldMessageID; k, _ = c.Next() {
			prefix, id := splitPostingKey(k)
			lists[string(prefix)] = append(lists[string(prefix)], bytes.Clone(id))
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		for prefix, ids := range lists {
			for chunk := range slices.Chunk(ids, chunkIDs) {
				if err := b.Put(append([]byte(prefix), chunk[0]...), appendIDs(nil, chunk)); err != nil {
					return err
				}
			}
		}
		return tx.Bucket(bucketRunMeta).Put(metaFormat, binary.BigEndian.AppendUint64(nil, 3))
	})
	return errors.Join(err, db.Close())
}

// checkKeyedLists reports a message id list key of the store at path that
// is not one run's: its value the chunk of the id it ends with.
func checkKeyedLists(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		for _, g := range readGens(tx) {
			c := g.postings.Cursor()
			for k, v := c.Seek([]byte{fieldMessageID}); k != nil && k[0] == fieldMessageID; k, v = c.Next() {
				_, id := splitPostingKey(k)
				if ids, err := decodeIDs(v); err != nil || len(ids) != 1 || !bytes.Equal(ids[0], id) {
					return fmt.Errorf("message id list key %q holds %q (%v)", k, ids, err)
				}
			}
		}
		return nil
	})
}

// Listener runs of one message id (redeliveries), each put running and
// then finished, flushed in batches while retention trims: the trims
// delete whole pages of the message id list's keys, and the lists before
// it (outcome, ...) still take every run. Small pages make a trim empty
// whole pages.
func TestBoltTrimsAKeyedListBesideChunkedOnes(t *testing.T) {
	t.Parallel()
	const maxRuns, batch, total = 1000, 100, 4000
	s, err := OpenBolt(filepath.Join(t.TempDir(), "opsrunner.db"),
		BoltOptions{Retention: Retention{MaxRuns: maxRuns}, FlushInterval: time.Hour, PageSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var model []Run
	for i := range total {
		r := Run{ID: fmt.Sprintf("run-%05d", i), Project: "p", Trigger: "listener", Status: StatusRunning,
			MessageID: "ID:broker-1:1:1:1", StartedAt: time.Now()}
		if err := s.PutRun(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		if i%batch == batch/2 {
			if err := s.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		r.Status, r.Outcome = StatusSucceeded, OutcomeCommitted
		if err := s.PutRun(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		if i%batch == batch-1 {
			if err := s.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		model = append(model, r)
	}
	if err := s.Sweep(t.Context(), time.Now()); err != nil {
		t.Fatal(err)
	}
	model = model[total-maxRuns:]
	for _, f := range []RunFilter{{MessageID: "ID:broker-1:1:1:1"}, {Outcome: OutcomeCommitted}, {Status: StatusSucceeded, MessageID: "ID:broker-1:1:1:1"}} {
		f.Limit = 1 << 20
		got, err := s.Runs(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != maxRuns || got[0].ID != model[maxRuns-1].ID || got[maxRuns-1].ID != model[0].ID {
			t.Errorf("%+v: %d runs, want the newest %d", f, len(got), maxRuns)
		}
	}
}
