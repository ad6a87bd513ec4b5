package main_test

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/api"
	"github.com/opsrunner/opsrunner/store"
)

// storeBackend answers run queries from a real bbolt store; other Backend
// methods are not called by these tests (the nil interface panics if they
// are).
type storeBackend struct {
	api.Backend
	st store.Store
}

func (b storeBackend) Runs(ctx context.Context, f store.RunFilter) ([]store.Run, error) {
	return b.st.Runs(ctx, f)
}

// `opsrunner runs --outcome X` lists only the runs of deliveries settled
// as X; an outcome the API does not know fails with its answer.
func TestCLIRunsByOutcome(t *testing.T) {
	t.Parallel()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "opsrunner.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	outcomes := map[string]string{"run-1": store.OutcomeCommitted, "run-2": store.OutcomeDeadLettered, "run-3": store.OutcomeRolledBack}
	for id, outcome := range outcomes {
		r := store.Run{ID: id, Project: "p", Operation: "op", Trigger: "listener", Status: store.StatusSucceeded,
			Outcome: outcome, StartedAt: time.Now()}
		if err := st.PutRun(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(api.New(storeBackend{st: st}, api.Options{}))
	t.Cleanup(srv.Close)

	out, code := cli(t, srv.URL, "runs", "--outcome", store.OutcomeDeadLettered)
	if code != 0 || !strings.Contains(out, "run-2") || strings.Contains(out, "run-1") || strings.Contains(out, "run-3") {
		t.Fatalf("runs --outcome dead_lettered: %d\n%s", code, out)
	}
	out, code = cli(t, srv.URL, "runs")
	for id := range outcomes {
		if code != 0 || !strings.Contains(out, id) {
			t.Fatalf("runs: %d, %s missing\n%s", code, id, out)
		}
	}
	out, code = cli(t, srv.URL, "runs", "--outcome", "lost")
	if code == 0 || !strings.Contains(out, "outcome must be one of") {
		t.Fatalf("runs --outcome lost: %d\n%s", code, out)
	}
	t.Logf("runs --outcome lost:\n%s", out)
}
