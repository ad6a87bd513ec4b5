package store

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A log that fails a write is not used again: Flush makes runs durable in
// bbolt instead, and says nothing went wrong.
func TestSyncLogFallsBackToBboltWhenTheLogFails(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "opsrunner.db")
	s, err := OpenBolt(path, BoltOptions{SyncLog: true, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	s.log.f.Close() // every write to the log fails from here on
	for i := range 3 {
		r := Run{ID: "run-" + string(rune('a'+i)), Project: "p", Status: StatusSucceeded, StartedAt: time.Now()}
		if err := s.PutRun(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(t.Context()); err != nil {
			t.Fatalf("flush %d: %v", i, err)
		}
	}
	if s.log.err == nil {
		t.Fatal("the log did not fail: this test proves nothing")
	}
	if s.Buffered() != 0 {
		t.Errorf("%d runs still buffered after Flush: not in bbolt", s.Buffered())
	}
	if err := s.Crash(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 3 {
		if _, err := s.Run(t.Context(), "run-"+string(rune('a'+i))); err != nil {
			t.Error(err)
		}
	}
}

// Replaying a log never takes a run back: a stored version further along
// (ended, or with its outcome) stays; one behind it is replaced.
func TestRunLogReplayKeepsTheFurthestVersion(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "opsrunner.db")
	s, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ahead := Run{ID: "run-a", Project: "p", Status: StatusSucceeded, Outcome: OutcomeCommitted, StartedAt: now}
	behind := Run{ID: "run-b", Project: "p", Status: StatusRunning, StartedAt: now}
	for _, r := range []Run{ahead, behind} {
		if err := s.PutRun(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A log file a crash kept from being removed: run-a as it was earlier,
	// run-b as it became later.
	l, err := openRunLog(path, 7)
	if err != nil {
		t.Fatal(err)
	}
	older, newer := ahead, behind
	older.Status, older.Outcome = StatusRunning, ""
	newer.Status = StatusFailed
	l.mu.Lock()
	err = l.append([]loggedRun{{1, older}, {2, newer}}, 2)
	l.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	l.close()

	s, err = OpenBolt(path, BoltOptions{SyncLog: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.log.n != 8 {
		t.Errorf("the new log is file %d, want 8 (after the replayed 7)", s.log.n)
	}
	for id, want := range map[string]string{"run-a": StatusSucceeded, "run-b": StatusFailed} {
		r, err := s.Run(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != want {
			t.Errorf("%s is %s after the replay, want %s", id, r.Status, want)
		}
	}
}

// FuzzDecodeRunLog: any bytes decode to the runs of their leading whole,
// checksummed records, without a panic.
func FuzzDecodeRunLog(f *testing.F) {
	now := time.Unix(1764680000, 0)
	f.Add([]byte{})
	for _, runs := range [][]Run{
		{{ID: "run-a", Project: "p", Status: StatusRunning, StartedAt: now}},
		{{ID: "run-a", Project: "p", Status: StatusSucceeded, StartedAt: now, Outcome: OutcomeCommitted}, {ID: "run-b", Input: []byte(`{"x":1}`)}},
	} {
		enc := encodeRecords(f, runs)
		f.Add(enc)
		f.Add(enc[:len(enc)-1])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		runs := decodeRunLog(b, nil)
		if len(runs) > len(b)/8 {
			t.Fatalf("%d runs from %d bytes", len(runs), len(b))
		}
		for _, r := range runs {
			if r.ID == "" {
				t.Fatal("a run without an id: the replay could not put it")
			}
		}
		for _, r := range runs { // what decodes encodes again
			if enc := encodeRecords(t, []Run{r}); len(decodeRunLog(enc, nil)) != 1 {
				t.Fatalf("run %q does not survive a round trip", r.ID)
			}
		}
	})
}

// encodeRecords returns runs as a log file holds them.
func encodeRecords(tb testing.TB, runs []Run) []byte {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "x.db")
	l, err := openRunLog(path, 1)
	if err != nil {
		tb.Fatal(err)
	}
	l.mu.Lock()
	logged := make([]loggedRun, len(runs))
	for i, r := range runs {
		logged[i] = loggedRun{uint64(i + 1), r}
	}
	err = l.append(logged, uint64(len(runs)))
	l.mu.Unlock()
	l.close()
	if err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(l.path(1))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
