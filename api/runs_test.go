package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/api"
	"github.com/opsrunner/opsrunner/store"
)

// runsBackend answers run queries from a real bbolt store; other Backend
// methods are not called by these tests (the nil interface panics if they
// are).
type runsBackend struct {
	api.Backend
	st store.Store
}

func (b runsBackend) Runs(ctx context.Context, f store.RunFilter) ([]store.Run, error) {
	return b.st.Runs(ctx, f)
}

// newRunsServer serves a store holding n listener runs, of which those
// whose index i satisfies deadLettered(i) were dead-lettered and the
// others committed. It returns the handler and the dead-lettered run ids,
// newest first.
func newRunsServer(t *testing.T, n int, deadLettered func(i int) bool) (http.Handler, []string) {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "opsrunner.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var want []string
	for i := range n {
		r := store.Run{ID: fmt.Sprintf("run-%04d", i), Project: "p", Operation: "op", Trigger: "listener",
			Status: store.StatusSucceeded, Outcome: store.OutcomeCommitted, StartedAt: base.Add(time.Duration(i) * time.Second)}
		if deadLettered(i) {
			r.Status, r.Outcome = store.StatusFailed, store.OutcomeDeadLettered
			want = append([]string{r.ID}, want...)
		}
		if err := st.PutRun(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		if i == n/2 {
			if err := st.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	return api.New(runsBackend{st: st}, api.Options{}), want
}

// runsPage is the answer of GET /api/v1/runs.
type runsPage struct {
	Runs []store.Run `json:"runs"`
	Next string      `json:"next"`
}

func getRuns(t *testing.T, h http.Handler, q url.Values) (int, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/runs?"+q.Encode(), nil))
	return rec.Code, rec.Body.Bytes()
}

// GET /api/v1/runs?outcome= lists only the runs with that outcome, and
// its pages (limit, next, before) lead through all of them when few runs
// among many match.
func TestRunsFilterByOutcome(t *testing.T) {
	t.Parallel()
	h, want := newRunsServer(t, 300, func(i int) bool { return i%41 == 3 })
	var got []string
	q := url.Values{"outcome": {store.OutcomeDeadLettered}, "limit": {"2"}}
	for range 300 {
		code, body := getRuns(t, h, q)
		if code != http.StatusOK {
			t.Fatalf("GET runs?%s: %d %s", q.Encode(), code, body)
		}
		var page runsPage
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Runs {
			if r.Outcome != store.OutcomeDeadLettered {
				t.Fatalf("run %s has outcome %q", r.ID, r.Outcome)
			}
			got = append(got, r.ID)
		}
		if page.Next == "" {
			break
		}
		q.Set("before", page.Next)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged through %v, want %v", got, want)
	}
}

// An outcome that is not one of the Contract's is a 400 in the JSON error
// shape, naming the valid ones.
func TestRunsUnknownOutcome(t *testing.T) {
	t.Parallel()
	h, _ := newRunsServer(t, 1, func(int) bool { return false })
	for _, v := range []string{"commited", "COMMITTED", " committed"} {
		code, body := getRuns(t, h, url.Values{"outcome": {v}})
		var answer struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
				Details struct {
					Parameter string   `json:"parameter"`
					Value     string   `json:"value"`
					Valid     []string `json:"valid"`
				} `json:"details"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &answer); err != nil {
			t.Fatalf("outcome %q: %d %s: %v", v, code, body, err)
		}
		e := answer.Error
		if code != http.StatusBadRequest || e.Code != "bad_request" || e.Message == "" ||
			e.Details.Parameter != "outcome" || e.Details.Value != v || !slices.Equal(e.Details.Valid, store.Outcomes()) {
			t.Errorf("outcome %q: %d %s", v, code, body)
		}
	}
	want := []string{"committed", "rolled_back", "dead_lettered", "skipped_duplicate", "refused"}
	if got := store.Outcomes(); !slices.Equal(got, want) {
		t.Errorf("store.Outcomes() = %q, want the Contract's %q", got, want)
	}
}
