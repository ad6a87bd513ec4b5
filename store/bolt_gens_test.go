package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// genKeys lists the store's generations, oldest first.
func genKeys(t *testing.T, s *Bolt) []string {
	t.Helper()
	var keys []string
	if err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRunGens).ForEach(func(k, v []byte) error {
			keys = append(keys, fmt.Sprintf("%x", k))
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

// genRun is run i of a listener: its operation, status and message id.
func genRun(id string, i int, status string) Run {
	return Run{ID: id, Project: "p", Operation: fmt.Sprintf("op%d", i%3), Trigger: "listener",
		Status: status, MessageID: fmt.Sprintf("m%d", i%7), StartedAt: time.Now()}
}

// Runs spread over many generations are found by every filter, newest
// first, and each once: a run put running and finished later stays in
// the generation that has it, also after newer ones began, and a run
// first stored late with an old id (in the newest generation) is still
// answered in id order. No posting is missing or left over.
func TestBoltQueriesSpanGenerations(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "opsrunner.db")
	const maxRuns = 600 // 75 runs a generation; 500 runs: no retention
	s, err := OpenBolt(path, BoltOptions{Retention: Retention{MaxRuns: maxRuns}, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	latest := map[string]Run{}
	put := func(r Run) {
		t.Helper()
		latest[r.ID] = r
		if err := s.PutRun(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 480 {
		put(genRun(fmt.Sprintf("run-%04d", i), i, StatusRunning))
		if i >= 40 { // finishes 40 runs later: often in a later generation
			j := i - 40
			put(genRun(fmt.Sprintf("run-%04d", j), j, StatusSucceeded))
		}
		if i%100 == 99 { // late, with an id below the newest generation's
			put(genRun(fmt.Sprintf("run-%04da", i-90), i, StatusFailed))
		}
		if i%23 == 22 {
			if err := s.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(genKeys(t, s)); n < 6 {
		t.Fatalf("%d generations, want at least 6", n)
	}
	var model []Run
	for _, id := range slices.Sorted(maps.Keys(latest)) {
		model = append(model, latest[id])
	}
	filters := []RunFilter{{}, {Status: StatusRunning}, {Status: StatusSucceeded}, {Status: StatusFailed},
		{Operation: "op1"}, {Operation: "op2", Status: StatusSucceeded}, {MessageID: "m3"}, {Project: "p", Trigger: "listener"},
		{Before: "run-0300"}, {Operation: "op0", Before: "run-0201a"}}
	checkFiltersAgainst(t, "across generations", s, model, filters)
	checkPages(t, s, model, filters, 7)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := CountPostings(path); err != nil || n != len(model)*5 {
		t.Errorf("%d postings (%v), want %d (five lists a run: project, operation, status, message id, trigger)", n, err, len(model)*5)
	}
	if s, err = OpenBolt(path, BoltOptions{Retention: Retention{MaxRuns: maxRuns}}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkFiltersAgainst(t, "reopened", s, model, filters)
}

// Retention drops whole generations at a flush, keeping at least MaxRuns;
// the sweep then trims to exactly MaxRuns, and drops a generation whose
// runs all started before MaxAge whole.
func TestBoltRetentionDropsGenerations(t *testing.T) {
	t.Parallel()
	const maxRuns = 200 // 64 runs a generation
	s, err := OpenBolt(filepath.Join(t.TempDir(), "opsrunner.db"), BoltOptions{Retention: Retention{MaxRuns: maxRuns, MaxAge: time.Hour}, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	old := time.Now().Add(-2 * time.Hour)
	for i := range 1000 {
		r := genRun(fmt.Sprintf("run-%04d", i), i, StatusSucceeded)
		if i < 960 {
			r.StartedAt = old
		}
		if err := s.PutRun(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 {
			if err := s.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	stored := storedRunIDs(t, s)
	if len(stored) < maxRuns || len(stored) > maxRuns+genRuns(maxRuns) || stored[0] != "run-0999" {
		t.Fatalf("after the flushes: %d runs from %s, want %d to %d from run-0999", len(stored), stored[0], maxRuns, maxRuns+genRuns(maxRuns))
	}
	if n := len(genKeys(t, s)); n > maxRuns/genRuns(maxRuns)+2 {
		t.Errorf("%d generations: retention should have dropped the oldest", n)
	}
	if err := s.Sweep(t.Context(), old.Add(time.Minute)); err != nil { // ages nothing out
		t.Fatal(err)
	}
	if stored = storedRunIDs(t, s); len(stored) != maxRuns || stored[maxRuns-1] != "run-0800" {
		t.Fatalf("after the sweep: %d runs, want exactly %d from run-0999 to run-0800", len(stored), maxRuns)
	}
	if err := s.Sweep(t.Context(), time.Now()); err != nil { // ages out all but the newest 40
		t.Fatal(err)
	}
	if stored = storedRunIDs(t, s); len(stored) != 40 || stored[39] != "run-0960" {
		t.Fatalf("after aging out: %d runs (to %s), want the 40 from run-0960", len(stored), stored[len(stored)-1])
	}
	if n := len(genKeys(t, s)); n > 2 {
		t.Errorf("%d generations left for 40 runs", n)
	}
}

// checkPages fails t when paging through a query of s by any of filters,
// size runs a page, does not answer the runs of model (in id order) it
// matches, newest first: a page holds the newest runs below the last one.
func checkPages(t *testing.T, s *Bolt, model []Run, filters []RunFilter, size int) {
	t.Helper()
	for _, f := range filters {
		var want, got []string
		for _, r := range slices.Backward(model) {
			if f.Matches(r) {
				want = append(want, r.ID)
			}
		}
		for page := f; ; {
			page.Limit = size
			runs, err := s.Runs(t.Context(), page)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range runs {
				got = append(got, r.ID)
			}
			if len(runs) < size {
				break
			}
			page.Before = runs[len(runs)-1].ID
		}
		if !slices.Equal(got, want) {
			t.Errorf("%+v in pages of %d: %d runs, want %d", f, size, len(got), len(want))
		}
	}
}

// writeRuns puts runs in the store at path (made if new) and closes it.
func writeRuns(t *testing.T, path string, runs []Run) {
	t.Helper()
	s, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		if err := s.PutRun(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func storedRunIDs(t *testing.T, s *Bolt) []string {
	t.Helper()
	runs, err := s.Runs(t.Context(), RunFilter{Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(runs))
	for i, r := range runs {
		ids[i] = r.ID
	}
	return ids
}

// A store written before generations (format 4, its run buckets at the
// top level) opens with them moved into one generation: every run and
// posting is there, and new runs follow.
func TestBoltMovesTopLevelRunsIntoAGeneration(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "opsrunner.db")
	var model []Run
	for i := range 300 {
		model = append(model, genRun(fmt.Sprintf("run-%04d", i), i, StatusSucceeded))
	}
	writeRuns(t, path, model)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(asTopLevel); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if keys := genKeys(t, s); strings.Join(keys, ",") != "0000000000000001" {
		t.Errorf("generations %v, want one: 1", keys)
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketRuns) != nil {
			return fmt.Errorf("runs are still at the top level")
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	model = append(model, genRun("run-0300", 300, StatusFailed))
	if err := s.PutRun(t.Context(), model[300]); err != nil {
		t.Fatal(err)
	}
	checkFiltersAgainst(t, "moved", s, model, []RunFilter{{}, {Operation: "op2"}, {MessageID: "m1"}, {Status: StatusFailed}})
}

// A file that an earlier version opened in between holds run buckets at
// the top level beside the generations: empty ones (it made no runs) are
// deleted, and runs it made become the newest generation.
func TestBoltOpensAfterAnEarlierVersionRan(t *testing.T) {
	t.Parallel()
	var model []Run
	for i := range 100 {
		model = append(model, genRun(fmt.Sprintf("run-%04d", i), i, StatusSucceeded))
	}
	for _, tc := range []struct {
		name    string
		earlier []Run // the runs the earlier version made
		gens    int
	}{{"no runs", nil, 1}, {"runs", model[70:], 2}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "opsrunner.db")
			writeRuns(t, path, model[:100-len(tc.earlier)])
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error {
				for _, name := range [][]byte{bucketRuns, bucketRunIndex, bucketRunPostings, bucketRunMeta} {
					if _, err := tx.CreateBucket(name); err != nil {
						return err
					}
				}
				rt := newRunTx(topRunBuckets(tx), nil)
				for _, r := range tc.earlier {
					if err := rt.put(r); err != nil {
						return err
					}
				}
				if err := rt.commit(); err != nil {
					return err
				}
				return rt.meta.Put(metaFormat, binary.BigEndian.AppendUint64(nil, runIndexFormat))
			})
			if err := errors.Join(err, db.Close()); err != nil {
				t.Fatal(err)
			}
			s, err := OpenBolt(path, BoltOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if keys := genKeys(t, s); len(keys) != tc.gens {
				t.Errorf("generations %v, want %d", keys, tc.gens)
			}
			filters := []RunFilter{{}, {Operation: "op1"}, {MessageID: "m2"}}
			checkFiltersAgainst(t, "reopened", s, model, filters)
			checkPages(t, s, model, filters, 9)
		})
	}
}

// Random histories over many generations, without retention (the limit
// is above the runs made): new runs, runs first stored late with an old
// id, runs put again, flushes to the run log, bbolt writes every 64 runs,
// crashes after a flush (the log then holds what bbolt lacks; losing what
// no flush made durable is the run log tests' subject), closes and opens.
// A run put again only moves forward (running, then ended), as the agent
// puts runs. After each step every filter, whole and in pages, answers
// the latest version of every run put.
func TestBoltGenerationsRandomHistories(t *testing.T) {
	t.Parallel()
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			randomHistory(t, rand.New(rand.NewPCG(seed, 7)))
		})
	}
}

func randomHistory(t *testing.T, rng *rand.Rand) {
	path := filepath.Join(t.TempDir(), "opsrunner.db")
	// 300 runs a generation; bbolt writes every 64 runs, the log at each Flush
	opts := BoltOptions{Retention: Retention{MaxRuns: 2400}, FlushInterval: time.Hour, MaxBatch: 64, SyncLog: true}
	s, err := OpenBolt(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	latest := map[string]Run{}
	var ids []string
	next := 0
	ended := []string{StatusSucceeded, StatusFailed}
	filters := []RunFilter{{}, {Status: StatusRunning}, {Status: StatusFailed}, {Operation: "op1"},
		{MessageID: "m4"}, {Operation: "op2", Status: StatusSucceeded}}
	for step := range 60 {
		for range rng.IntN(60) {
			var r Run
			switch p := rng.IntN(10); {
			case p < 6 || len(ids) == 0: // a new run
				next++
				r = genRun(fmt.Sprintf("run-%05d", next*10), next, StatusRunning)
			case p < 7: // first stored late, with an old id
				i := rng.IntN(next + 1)
				r = genRun(fmt.Sprintf("run-%05d", i*10+1+rng.IntN(9)), i, StatusRunning)
			default: // put again: a running run ends, an ended one changes otherwise
				r = latest[ids[rng.IntN(len(ids))]]
				if r.Status == StatusRunning {
					r.Status = ended[rng.IntN(len(ended))]
				}
				r.Operation = fmt.Sprintf("op%d", rng.IntN(3))
			}
			if _, ok := latest[r.ID]; !ok {
				ids = append(ids, r.ID)
			}
			latest[r.ID] = r
			if err := s.PutRun(t.Context(), r); err != nil {
				t.Fatal(err)
			}
		}
		switch rng.IntN(6) {
		case 0: // a crash after a flush: the log has what bbolt lacks
			if err := errors.Join(s.Flush(t.Context()), s.Crash()); err != nil {
				t.Fatal(err)
			}
			if s, err = OpenBolt(path, opts); err != nil {
				t.Fatal(err)
			}
		case 1:
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if s, err = OpenBolt(path, opts); err != nil {
				t.Fatal(err)
			}
		default:
			if err := s.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		var model []Run
		for _, id := range slices.Sorted(maps.Keys(latest)) {
			model = append(model, latest[id])
		}
		when := fmt.Sprintf("step %d", step)
		checkFiltersAgainst(t, when, s, model, filters)
		checkPages(t, s, model, filters, 1+rng.IntN(40))
		if t.Failed() {
			t.FailNow()
		}
	}
	if n := len(genKeys(t, s)); n < 3 {
		t.Errorf("%d generations: the history did not span several", n)
	}
}
