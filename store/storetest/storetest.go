// Package storetest is the conformance suite every store.Store
// implementation passes: call Run (and RunRetention) from the
// implementation's tests with a constructor of fresh, empty stores.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/opsrunner/opsrunner/store"
)

// NewStore returns a fresh, empty store for one test and arranges for it to
// be closed when the test ends (Close is idempotent, tests may close it too).
type NewStore func(t *testing.T) store.Store

// NewStoreWithRetention is NewStore with a run retention.
type NewStoreWithRetention func(t *testing.T, r store.Retention) store.Store

// base is the time the suite's run IDs start from.
var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// id returns a ULID for base + i milliseconds: ids sort as i does.
func id(i int) string {
	t := base.Add(time.Duration(i) * time.Millisecond)
	var entropy [10]byte // fixed: the same i always gives the same id
	return ulid.MustNew(ulid.Timestamp(t), bytes.NewReader(entropy[:])).String()
}

func ctx(t *testing.T) context.Context { return t.Context() }

// Run runs the conformance suite against stores made by newStore.
func Run(t *testing.T, newStore NewStore) {
	t.Run("ProjectVersions", func(t *testing.T) { t.Parallel(); testProjects(t, newStore(t)) })
	t.Run("DeleteProject", func(t *testing.T) { t.Parallel(); testDeleteProject(t, newStore(t)) })
	t.Run("States", func(t *testing.T) { t.Parallel(); testStates(t, newStore(t)) })
	t.Run("RunRoundTrip", func(t *testing.T) { t.Parallel(); testRunRoundTrip(t, newStore(t)) })
	t.Run("RunBatchRoundTrip", func(t *testing.T) { t.Parallel(); testRunBatchRoundTrip(t, newStore(t)) })
	t.Run("RunFilters", func(t *testing.T) { t.Parallel(); testRunFilters(t, newStore(t)) })
	t.Run("RunPaging", func(t *testing.T) { t.Parallel(); testRunPaging(t, newStore(t)) })
	t.Run("RunOutcomeFilter", func(t *testing.T) { t.Parallel(); testRunOutcomeFilter(t, newStore(t)) })
	t.Run("RunOutcomePaging", func(t *testing.T) { t.Parallel(); testRunOutcomePaging(t, newStore(t)) })
	t.Run("RunTriggerScheduleFilter", func(t *testing.T) { t.Parallel(); testRunTriggerScheduleFilter(t, newStore(t)) })
	t.Run("RunQueries", func(t *testing.T) { t.Parallel(); testRunQueries(t, newStore(t)) })
	t.Run("RunReplaceAcrossFlush", func(t *testing.T) { t.Parallel(); testRunReplace(t, newStore(t)) })
	t.Run("ConcurrentPutRun", func(t *testing.T) { t.Parallel(); testConcurrentPutRun(t, newStore(t)) })
	t.Run("SweepByAge", func(t *testing.T) { t.Parallel(); testSweepByAge(t, newStore(t)) })
	t.Run("DeadLetters", func(t *testing.T) { t.Parallel(); testDeadLetters(t, newStore(t)) })
	t.Run("IdempotencyKeys", func(t *testing.T) { t.Parallel(); testIdempotency(t, newStore(t)) })
	t.Run("Counters", func(t *testing.T) { t.Parallel(); testCounters(t, newStore(t)) })
	t.Run("Secrets", func(t *testing.T) { t.Parallel(); testSecrets(t, newStore(t)) })
	t.Run("SecretsPerProject", func(t *testing.T) { t.Parallel(); testSecretsPerProject(t, newStore(t)) })
	t.Run("Watch", func(t *testing.T) { t.Parallel(); testWatch(t, newStore(t)) })
	t.Run("CloseIdempotent", func(t *testing.T) { t.Parallel(); testClose(t, newStore(t)) })
}

// RunRetention checks Sweep's count bound with a small MaxRuns.
func RunRetention(t *testing.T, newStore NewStoreWithRetention) {
	t.Run("SweepByCount", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, store.Retention{MaxRuns: 5})
		for i := range 12 {
			mustPut(t, s, store.Run{ID: id(i), Project: "p", Status: store.StatusSucceeded, StartedAt: time.Now()})
		}
		if err := s.Sweep(ctx(t), time.Now()); err != nil {
			t.Fatal(err)
		}
		got := ids(t, s, store.RunFilter{Limit: 100})
		want := []string{id(11), id(10), id(9), id(8), id(7)}
		if !slices.Equal(got, want) {
			t.Fatalf("after sweep runs = %v, want the newest five %v", got, want)
		}
		if _, err := s.Run(ctx(t), id(0)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Run(oldest) after sweep: err = %v, want ErrNotFound", err)
		}
		// A filtered query finds no deleted run either.
		if got := ids(t, s, store.RunFilter{Project: "p", Status: store.StatusSucceeded, Limit: 100}); !slices.Equal(got, want) {
			t.Fatalf("after sweep project=p status=succeeded = %v, want %v", got, want)
		}
	})
}

func testProjects(t *testing.T, s store.Store) {
	c := ctx(t)
	if _, _, err := s.ProjectVersion(c, "orders", 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown project: err = %v, want ErrNotFound", err)
	}
	for i, bundle := range []string{"bundle-1", "bundle-two", "bundle-3"} {
		pv, err := s.SaveProjectVersion(c, "orders", []byte(bundle), fmt.Sprintf("note %d", i+1))
		if err != nil {
			t.Fatal(err)
		}
		if pv.Version != i+1 || pv.Project != "orders" || pv.Size != len(bundle) || pv.Note != fmt.Sprintf("note %d", i+1) || pv.CreatedAt.IsZero() {
			t.Fatalf("save %d: got %+v", i+1, pv)
		}
	}
	if _, err := s.SaveProjectVersion(c, "billing", []byte("b"), ""); err != nil {
		t.Fatal(err)
	}

	pv, bundle, err := s.ProjectVersion(c, "orders", 2)
	if err != nil || pv.Version != 2 || string(bundle) != "bundle-two" {
		t.Fatalf("ProjectVersion(orders, 2) = %+v, %q, %v", pv, bundle, err)
	}
	if _, _, err := s.ProjectVersion(c, "orders", 9); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown version: err = %v, want ErrNotFound", err)
	}

	projects, err := s.Projects(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(projects) != 2 || projects[0].Name != "billing" || projects[1].Name != "orders" {
		t.Fatalf("Projects = %+v, want billing then orders", projects)
	}
	if p := projects[1]; p.ActiveVersion != 3 || len(p.Versions) != 3 || p.Versions[0].Version != 1 || p.Versions[2].Version != 3 {
		t.Fatalf("orders = %+v, want versions 1..3 oldest first, active 3", p)
	}

	// Rollback moves the pointer; the next deploy still gets a new number.
	if err := s.SetActiveVersion(c, "orders", 1); err != nil {
		t.Fatal(err)
	}
	if pv, bundle, err := s.ProjectVersion(c, "orders", 0); err != nil || pv.Version != 1 || string(bundle) != "bundle-1" {
		t.Fatalf("active after rollback = %+v, %q, %v; want version 1", pv, bundle, err)
	}
	for _, tc := range []struct {
		project string
		version int
	}{{"orders", 7}, {"nope", 1}} {
		if err := s.SetActiveVersion(c, tc.project, tc.version); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SetActiveVersion(%s, %d): err = %v, want ErrNotFound", tc.project, tc.version, err)
		}
	}
	if pv, err := s.SaveProjectVersion(c, "orders", []byte("bundle-4"), ""); err != nil || pv.Version != 4 {
		t.Fatalf("deploy after rollback = %+v, %v; want version 4", pv, err)
	}
	projects, _ = s.Projects(c)
	if projects[1].ActiveVersion != 4 {
		t.Fatalf("active after new deploy = %d, want 4", projects[1].ActiveVersion)
	}
}

// DeleteProject removes every version of one project, announces it, and
// leaves other projects alone; a project deployed again starts at 1.
func testDeleteProject(t *testing.T, s store.Store) {
	c := ctx(t)
	for _, name := range []string{"orders", "orders", "billing"} {
		if _, err := s.SaveProjectVersion(c, name, []byte(name+"-bundle"), ""); err != nil {
			t.Fatal(err)
		}
	}
	var changes <-chan store.Change
	if w, ok := s.(store.Watcher); ok {
		changes = w.Watch(c)
	}
	if err := s.DeleteProject(c, "orders"); err != nil {
		t.Fatalf("DeleteProject(orders): %v", err)
	}
	if changes != nil {
		select {
		case got := <-changes:
			if want := (store.Change{Kind: store.ChangeProject, Key: "orders"}); got != want {
				t.Fatalf("change = %+v, want %+v", got, want)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("DeleteProject not announced within 2s")
		}
	}
	for _, v := range []int{0, 1, 2} {
		if _, _, err := s.ProjectVersion(c, "orders", v); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ProjectVersion(orders, %d) after delete: err = %v, want ErrNotFound", v, err)
		}
	}
	projects, err := s.Projects(c)
	if err != nil || len(projects) != 1 || projects[0].Name != "billing" {
		t.Fatalf("Projects after delete = %+v, %v; want billing only", projects, err)
	}
	if _, bundle, err := s.ProjectVersion(c, "billing", 1); err != nil || string(bundle) != "billing-bundle" {
		t.Fatalf("billing after deleting orders = %q, %v", bundle, err)
	}
	for _, name := range []string{"orders", "nope"} {
		if err := s.DeleteProject(c, name); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeleteProject(%s) of no project: err = %v, want ErrNotFound", name, err)
		}
	}
	pv, err := s.SaveProjectVersion(c, "orders", []byte("again"), "")
	if err != nil || pv.Version != 1 {
		t.Fatalf("deploy after delete = %+v, %v; want version 1", pv, err)
	}
	if _, bundle, err := s.ProjectVersion(c, "orders", 0); err != nil || string(bundle) != "again" {
		t.Fatalf("active after redeploy = %q, %v", bundle, err)
	}
}

func testStates(t *testing.T, s store.Store) {
	c := ctx(t)
	if _, ok, err := s.State(c, "orders/orders-in"); err != nil || ok {
		t.Fatalf("unset state: ok = %v, err = %v", ok, err)
	}
	for _, want := range []bool{false, true, false} {
		if err := s.SetState(c, "orders/orders-in", want); err != nil {
			t.Fatal(err)
		}
		got, ok, err := s.State(c, "orders/orders-in")
		if err != nil || !ok || got != want {
			t.Fatalf("State after SetState(%v) = %v, %v, %v", want, got, ok, err)
		}
	}
	if _, ok, _ := s.State(c, "orders/other"); ok {
		t.Fatal("states leak between keys")
	}
}

func mustPut(t *testing.T, s store.Store, r store.Run) {
	t.Helper()
	if err := s.PutRun(ctx(t), r); err != nil {
		t.Fatal(err)
	}
}

func ids(t *testing.T, s store.Store, f store.RunFilter) []string {
	t.Helper()
	runs, err := s.Runs(ctx(t), f)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = r.ID
	}
	return out
}

func testRunRoundTrip(t *testing.T, s store.Store) {
	c := ctx(t)
	fin := base.Add(time.Second)
	want := store.Run{
		ID: id(1), Project: "orders", Version: 3, Operation: "Process Order", Trigger: "webhook",
		Status: store.StatusSucceeded, StartedAt: base, FinishedAt: &fin, DurationMs: 1000, Agent: "a1",
		MessageID: "m-1", Attempt: 2, Outcome: store.OutcomeCommitted,
		Chain:  []store.Step{{Operation: "Process Order", Status: store.StatusSucceeded, DurationMs: 1000}},
		Logs:   []store.LogLine{{Time: base, Level: "info", Message: "hello"}},
		Result: []byte(`{"ok":true}`), HTTPStatus: 201, ParentRunID: "parent",
	}
	mustPut(t, s, want)
	check := func(when string) {
		got, err := s.Run(c, want.ID)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if got.ID != want.ID || got.Operation != want.Operation || got.Status != want.Status ||
			string(got.Result) != string(want.Result) || got.HTTPStatus != 201 || len(got.Logs) != 1 ||
			len(got.Chain) != 1 || got.FinishedAt == nil || !got.FinishedAt.Equal(fin) || !got.StartedAt.Equal(base) ||
			got.Outcome != want.Outcome || got.Attempt != 2 || got.ParentRunID != "parent" {
			t.Fatalf("%s: got %+v, want %+v", when, got, want)
		}
	}
	cut := store.Run{ID: id(2), Project: "orders", Operation: "op", Status: store.StatusSucceeded, StartedAt: base,
		ResultTruncated: true, FullResult: []byte(`"the whole answer"`)}
	mustPut(t, s, cut)
	checkCut := func(when string) {
		got, err := s.Run(c, cut.ID)
		if err != nil || !got.ResultTruncated || got.Result != nil || string(got.FullResult) != string(cut.FullResult) {
			t.Fatalf("%s: cut result: got %+v (%v)", when, got, err)
		}
	}
	check("buffered") // visible before any flush
	checkCut("buffered")
	if err := s.Flush(c); err != nil {
		t.Fatal(err)
	}
	check("flushed")
	checkCut("flushed")
	if _, err := s.Run(c, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing run: err = %v, want ErrNotFound", err)
	}
}

// testRunBatchRoundTrip: runs flushed together, of every size and
// including strings only json.Marshal's own escaping handles, read back
// field for field, through the buffer and through the index, after a
// second batch was flushed (a store may reuse its buffers).
func testRunBatchRoundTrip(t *testing.T, s store.Store) {
	c := ctx(t)
	const n = 300
	want := make(map[string]store.Run, n)
	for i := range n {
		fin := base.Add(time.Duration(i) * time.Second)
		r := store.Run{
			ID: id(i), Project: fmt.Sprintf("p%d", i%3), Operation: "op", Trigger: "listener",
			Status: store.StatusFailed, StartedAt: base.Add(time.Duration(i) * time.Millisecond), FinishedAt: &fin,
			MessageID: fmt.Sprintf("m-%d", i), Attempt: 1 + i%4, Outcome: store.OutcomeRolledBack,
			Error:  fmt.Sprintf("failure %d", i),
			Chain:  []store.Step{{Operation: "op", Status: store.StatusFailed}},
			Logs:   []store.LogLine{{Time: base, Level: "info", Message: strings.Repeat("x", i*7)}},
			Result: []byte(fmt.Sprintf(`{"n":%d}`, i)),
		}
		if i%5 == 0 {
			r.Error = fmt.Sprintf("<b>%d</b> & \u2028 \"quoted\"", i)
			r.Result = []byte(fmt.Sprintf(`{"html":"<b>%d</b> & \u2028"}`, i))
		}
		want[r.ID] = r
		mustPut(t, s, r)
		if i == n/2 || i == n-1 {
			if err := s.Flush(c); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, w := range want {
		got, err := s.Run(c, w.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Project != w.Project || got.MessageID != w.MessageID || got.Attempt != w.Attempt || got.Error != w.Error ||
			len(got.Logs) != 1 || got.Logs[0].Message != w.Logs[0].Message || string(got.Result) != string(w.Result) ||
			!got.StartedAt.Equal(w.StartedAt) || got.FinishedAt == nil || !got.FinishedAt.Equal(*w.FinishedAt) {
			t.Fatalf("run %s: got %+v, want %+v", w.ID, got, w)
		}
	}
	for _, p := range []string{"p0", "p1", "p2"} {
		runs, err := s.Runs(c, store.RunFilter{Project: p, MessageID: "m-" + p[1:], Limit: n})
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != 1 || runs[0].ID != id(int(p[1]-'0')) {
			t.Fatalf("project %s, message m-%s: got %d runs %v", p, p[1:], len(runs), runs)
		}
	}
}

func testRunFilters(t *testing.T, s store.Store) {
	c := ctx(t)
	runs := []store.Run{
		{ID: id(1), Project: "orders", Operation: "A", Status: store.StatusSucceeded, MessageID: "m1", StartedAt: base.Add(1 * time.Minute)},
		{ID: id(2), Project: "orders", Operation: "B", Status: store.StatusFailed, StartedAt: base.Add(2 * time.Minute)},
		{ID: id(3), Project: "billing", Operation: "A", Status: store.StatusSucceeded, StartedAt: base.Add(3 * time.Minute)},
		{ID: id(4), Project: "orders", Operation: "A", Status: store.StatusRunning, MessageID: "m2", StartedAt: base.Add(4 * time.Minute)},
		{ID: id(5), Project: "orders", Operation: "A", Status: store.StatusTimedOut, StartedAt: base.Add(5 * time.Minute)},
	}
	// Half on disk, half buffered: results must merge both.
	for i, r := range runs {
		mustPut(t, s, r)
		if i == 2 {
			if err := s.Flush(c); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name string
		f    store.RunFilter
		want []string
	}{
		{"all newest first", store.RunFilter{}, []string{id(5), id(4), id(3), id(2), id(1)}},
		{"project", store.RunFilter{Project: "billing"}, []string{id(3)}},
		{"operation", store.RunFilter{Project: "orders", Operation: "A"}, []string{id(5), id(4), id(1)}},
		{"status", store.RunFilter{Status: store.StatusFailed}, []string{id(2)}},
		{"message id", store.RunFilter{MessageID: "m2"}, []string{id(4)}},
		{"since", store.RunFilter{Since: base.Add(4 * time.Minute)}, []string{id(5), id(4)}},
		{"before", store.RunFilter{Before: id(3)}, []string{id(2), id(1)}},
		{"limit", store.RunFilter{Limit: 2}, []string{id(5), id(4)}},
		{"filter and limit", store.RunFilter{Operation: "A", Limit: 2}, []string{id(5), id(4)}},
		{"no match", store.RunFilter{Project: "nope"}, []string{}},
	} {
		if got := ids(t, s, tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func testRunPaging(t *testing.T, s store.Store) {
	const n = 250
	for i := range n {
		mustPut(t, s, store.Run{ID: id(i), Project: "p", Operation: "op", Status: store.StatusSucceeded, StartedAt: base})
		if i == n/2 {
			if err := s.Flush(ctx(t)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := ids(t, s, store.RunFilter{}); len(got) != 100 {
		t.Fatalf("default limit: got %d runs, want 100", len(got))
	}
	var all []string
	before := ""
	for {
		page := ids(t, s, store.RunFilter{Before: before, Limit: 40, Operation: "op"})
		all = append(all, page...)
		if len(page) < 40 {
			break
		}
		before = page[len(page)-1]
	}
	if len(all) != n {
		t.Fatalf("paged through %d runs, want %d", len(all), n)
	}
	for i, got := range all {
		if want := id(n - 1 - i); got != want {
			t.Fatalf("page order: run %d = %s, want %s", i, got, want)
		}
	}
}

// A filter on the outcome selects the runs whose latest version has it,
// stored or buffered, alone or with other fields.
func testRunOutcomeFilter(t *testing.T, s store.Store) {
	c := ctx(t)
	runs := []store.Run{
		{ID: id(1), Project: "orders", Operation: "A", Status: store.StatusSucceeded, Outcome: store.OutcomeCommitted, MessageID: "m1", StartedAt: base},
		{ID: id(2), Project: "orders", Operation: "B", Status: store.StatusFailed, Outcome: store.OutcomeRolledBack, MessageID: "m1", StartedAt: base},
		{ID: id(3), Project: "orders", Operation: "B", Status: store.StatusFailed, Outcome: store.OutcomeDeadLettered, MessageID: "m1", StartedAt: base},
		{ID: id(4), Project: "orders", Operation: "A", Status: store.StatusSucceeded, StartedAt: base}, // a webhook run: no outcome
		{ID: id(5), Project: "billing", Operation: "A", Status: store.StatusSucceeded, Outcome: store.OutcomeCommitted, StartedAt: base},
		{ID: id(6), Project: "orders", Operation: "A", Status: store.StatusSucceeded, Outcome: store.OutcomeSkippedDuplicate, StartedAt: base},
		{ID: id(7), Project: "orders", Operation: "A", Status: store.StatusRunning, StartedAt: base},
	}
	for i, r := range runs {
		mustPut(t, s, r)
		if i == 3 { // half on disk, half buffered
			if err := s.Flush(c); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Flush(c); err != nil {
		t.Fatal(err)
	}
	// id(7) ends: committed, buffered over its running version on disk.
	runs[6].Status, runs[6].Outcome = store.StatusSucceeded, store.OutcomeCommitted
	mustPut(t, s, runs[6])
	for _, tc := range []struct {
		name string
		f    store.RunFilter
		want []string
	}{
		{"committed", store.RunFilter{Outcome: store.OutcomeCommitted}, []string{id(7), id(5), id(1)}},
		{"rolled back", store.RunFilter{Outcome: store.OutcomeRolledBack}, []string{id(2)}},
		{"dead lettered", store.RunFilter{Outcome: store.OutcomeDeadLettered}, []string{id(3)}},
		{"skipped duplicate", store.RunFilter{Outcome: store.OutcomeSkippedDuplicate}, []string{id(6)}},
		{"refused", store.RunFilter{Outcome: store.OutcomeRefused}, []string{}},
		{"outcome and project", store.RunFilter{Outcome: store.OutcomeCommitted, Project: "orders"}, []string{id(7), id(1)}},
		{"outcome and message id", store.RunFilter{Outcome: store.OutcomeRolledBack, MessageID: "m1"}, []string{id(2)}},
		{"outcome and limit", store.RunFilter{Outcome: store.OutcomeCommitted, Limit: 2}, []string{id(7), id(5)}},
		{"outcome and before", store.RunFilter{Outcome: store.OutcomeCommitted, Before: id(5)}, []string{id(1)}},
		{"no outcome filter", store.RunFilter{Operation: "B"}, []string{id(3), id(2)}},
	} {
		if got := ids(t, s, tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

// Runs are selected by trigger and by schedule name, alone or with the
// other filters, buffered or on disk; a schedule's scheduledAt survives.
func testRunTriggerScheduleFilter(t *testing.T, s store.Store) {
	c := ctx(t)
	tick := base.Add(time.Minute)
	runs := []store.Run{
		{ID: id(1), Project: "ops", Operation: "Beat", Trigger: "schedule", Schedule: "heartbeat", ScheduledAt: &tick, Status: store.StatusSucceeded, StartedAt: base},
		{ID: id(2), Project: "ops", Operation: "Beat", Trigger: "webhook", Status: store.StatusSucceeded, StartedAt: base},
		{ID: id(3), Project: "ops", Operation: "Report", Trigger: "schedule", Schedule: "nightly", ScheduledAt: &tick, Status: store.StatusFailed, StartedAt: base},
		{ID: id(4), Project: "other", Operation: "Beat", Trigger: "schedule", Schedule: "heartbeat", ScheduledAt: &tick, Status: store.StatusSucceeded, StartedAt: base},
		{ID: id(5), Project: "ops", Operation: "Beat", Trigger: "schedule", Schedule: "heartbeat", Status: store.StatusSucceeded, StartedAt: base},
	}
	for i, r := range runs {
		mustPut(t, s, r)
		if i == 2 { // half on disk, half buffered
			if err := s.Flush(c); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name string
		f    store.RunFilter
		want []string
	}{
		{"trigger", store.RunFilter{Trigger: "schedule"}, []string{id(5), id(4), id(3), id(1)}},
		{"other trigger", store.RunFilter{Trigger: "webhook"}, []string{id(2)}},
		{"schedule", store.RunFilter{Schedule: "heartbeat"}, []string{id(5), id(4), id(1)}},
		{"schedule of a project", store.RunFilter{Project: "ops", Schedule: "heartbeat"}, []string{id(5), id(1)}},
		{"schedule and status", store.RunFilter{Schedule: "nightly", Status: store.StatusFailed}, []string{id(3)}},
		{"schedule and limit", store.RunFilter{Trigger: "schedule", Schedule: "heartbeat", Limit: 1}, []string{id(5)}},
		{"unknown schedule", store.RunFilter{Schedule: "heart"}, []string{}},
	} {
		if got := ids(t, s, tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	r, err := s.Run(c, id(1))
	if err != nil {
		t.Fatal(err)
	}
	if r.Schedule != "heartbeat" || r.ScheduledAt == nil || !r.ScheduledAt.Equal(tick) {
		t.Errorf("run read back: schedule %q, scheduledAt %v", r.Schedule, r.ScheduledAt)
	}
}

// Paging through an outcome that few runs have, among many stored and
// buffered runs, yields each of them once, newest first: a page is only
// short at the end.
func testRunOutcomePaging(t *testing.T, s store.Store) {
	const n = 600
	var want []string
	for i := range n {
		r := store.Run{ID: id(i), Project: "p", Operation: "op", Status: store.StatusSucceeded,
			Outcome: store.OutcomeCommitted, StartedAt: base}
		if i%97 == 5 {
			r.Status, r.Outcome = store.StatusFailed, store.OutcomeDeadLettered
			want = append([]string{r.ID}, want...)
		}
		mustPut(t, s, r)
		if i == n/2 {
			if err := s.Flush(ctx(t)); err != nil {
				t.Fatal(err)
			}
		}
	}
	var all []string
	before := ""
	for range n {
		page := ids(t, s, store.RunFilter{Outcome: store.OutcomeDeadLettered, Before: before, Limit: 2})
		all = append(all, page...)
		if len(page) < 2 {
			break
		}
		before = page[len(page)-1]
	}
	if !slices.Equal(all, want) {
		t.Fatalf("paged through %d runs %v, want the %d dead-lettered ones %v", len(all), all[:min(len(all), 10)], len(want), want)
	}
}

func testRunReplace(t *testing.T, s store.Store) {
	c := ctx(t)
	r := store.Run{ID: id(1), Project: "p", Operation: "op", Status: store.StatusRunning, StartedAt: base}
	mustPut(t, s, r)
	if err := s.Flush(c); err != nil {
		t.Fatal(err)
	}
	r.Status = store.StatusSucceeded
	mustPut(t, s, r) // newer version buffered, older on disk
	if got := ids(t, s, store.RunFilter{Status: store.StatusRunning}); len(got) != 0 {
		t.Fatalf("stale version listed: status=running gives %v", got)
	}
	if got := ids(t, s, store.RunFilter{Status: store.StatusSucceeded}); !slices.Equal(got, []string{id(1)}) {
		t.Fatalf("status=succeeded gives %v", got)
	}
	if got := ids(t, s, store.RunFilter{}); len(got) != 1 {
		t.Fatalf("replaced run listed %d times", len(got))
	}
	if err := s.Flush(c); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Run(c, id(1)); err != nil || got.Status != store.StatusSucceeded {
		t.Fatalf("after flush: %+v, %v", got, err)
	}
}

func testConcurrentPutRun(t *testing.T, s store.Store) {
	const writers, each = 8, 60
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r := store.Run{ID: id(w*each + i), Project: "p", Status: store.StatusRunning, StartedAt: base}
				if err := s.PutRun(ctx(t), r); err != nil {
					errs <- err
					return
				}
				r.Status = store.StatusSucceeded
				if err := s.PutRun(ctx(t), r); err != nil {
					errs <- err
					return
				}
				if _, err := s.Runs(ctx(t), store.RunFilter{Limit: 5}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := ids(t, s, store.RunFilter{Status: store.StatusSucceeded, Limit: 1000}); len(got) != writers*each {
		t.Fatalf("got %d succeeded runs, want %d", len(got), writers*each)
	}
}

func testSweepByAge(t *testing.T, s store.Store) {
	c := ctx(t)
	now := time.Now()
	mustPut(t, s, store.Run{ID: id(1), Project: "p", Status: store.StatusSucceeded, StartedAt: now.Add(-8 * 24 * time.Hour)})
	mustPut(t, s, store.Run{ID: id(2), Project: "p", Status: store.StatusSucceeded, StartedAt: now.Add(-time.Hour)})
	if err := s.Sweep(c, now); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, s, store.RunFilter{}); !slices.Equal(got, []string{id(2)}) {
		t.Fatalf("after sweep: %v, want only the run younger than 7 days", got)
	}
}

func testDeadLetters(t *testing.T, s store.Store) {
	c := ctx(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	letters := []store.DeadLetter{
		{ID: id(1), Listener: "orders-in", MessageID: "m1", Destination: "/queue/orders", DeadLetterDestination: "/queue/orders.DLQ",
			Attempts: 6, Error: "boom", FailedAt: now, Body: "{}", Headers: map[string]string{"k": "v"}, ExpiresAt: now.Add(time.Minute)},
		{ID: id(2), Listener: "billing-in", MessageID: "m2", FailedAt: now},
		{ID: id(3), Listener: "orders-in", MessageID: "m3", FailedAt: now},
	}
	for _, d := range letters {
		if err := s.PutDeadLetter(c, d); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.DeadLetter(c, id(1))
	if err != nil || got.Error != "boom" || got.Headers["k"] != "v" || got.Attempts != 6 || !got.FailedAt.Equal(now) {
		t.Fatalf("DeadLetter = %+v, %v", got, err)
	}
	for _, tc := range []struct {
		f    store.DeadLetterFilter
		want []string
	}{
		{store.DeadLetterFilter{}, []string{id(3), id(2), id(1)}},
		{store.DeadLetterFilter{Listener: "orders-in"}, []string{id(3), id(1)}},
		{store.DeadLetterFilter{Limit: 1}, []string{id(3)}},
	} {
		list, err := s.DeadLetters(c, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		var gotIDs []string
		for _, d := range list {
			gotIDs = append(gotIDs, d.ID)
		}
		if !slices.Equal(gotIDs, tc.want) {
			t.Errorf("DeadLetters(%+v) = %v, want %v", tc.f, gotIDs, tc.want)
		}
	}
	if err := s.DeleteDeadLetter(c, id(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeadLetter(c, id(2)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted letter: err = %v, want ErrNotFound", err)
	}
	// Sweep after id(1) expired: the letter without ExpiresAt stays.
	if err := s.Sweep(c, now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeadLetter(c, id(1)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired letter after sweep: err = %v, want ErrNotFound", err)
	}
	if _, err := s.DeadLetter(c, id(3)); err != nil {
		t.Fatalf("letter without expiry swept: %v", err)
	}
}

// testIdempotency: a key binds to the first claim (its run and body
// digest) until its ttl passes; Sweep keeps live keys.
func testIdempotency(t *testing.T, s store.Store) {
	c := ctx(t)
	const ttl = 300 * time.Millisecond
	claim := func(run, digest string) store.Claim { return store.Claim{RunID: run, BodyDigest: digest} }
	for _, step := range []struct {
		key         string
		claim, want store.Claim
		wantCreated bool
	}{
		{"k1", claim("run-1", "d1"), claim("run-1", "d1"), true},
		{"k1", claim("run-2", "d2"), claim("run-1", "d1"), false},
		{"k2", claim("run-3", ""), claim("run-3", ""), true},
		{"k2", claim("run-6", "d6"), claim("run-3", ""), false},
	} {
		bound, created, err := s.ClaimIdempotencyKey(c, step.key, step.claim, ttl)
		if err != nil || bound != step.want || created != step.wantCreated {
			t.Fatalf("Claim(%s, %+v) = %+v, %v, %v; want %+v, %v", step.key, step.claim, bound, created, err, step.want, step.wantCreated)
		}
	}
	time.Sleep(ttl + 100*time.Millisecond)
	// The fresh binding lives a minute, so that a slow machine cannot
	// let it lapse before the sweep below.
	if bound, created, err := s.ClaimIdempotencyKey(c, "k1", claim("run-4", "d4"), time.Minute); err != nil || !created || bound.RunID != "run-4" {
		t.Fatalf("Claim after ttl = %+v, %v, %v; want a fresh binding", bound, created, err)
	}
	if err := s.Sweep(c, time.Now()); err != nil {
		t.Fatal(err)
	}
	if bound, created, _ := s.ClaimIdempotencyKey(c, "k1", claim("run-5", "d5"), ttl); created || bound != claim("run-4", "d4") {
		t.Fatalf("sweep removed a live key: %+v, %v", bound, created)
	}
}

// testCounters: a counter counts up from 1 per key, lapses ttl after its
// last increment (then starts over), and Sweep keeps live counters.
func testCounters(t *testing.T, s store.Store) {
	c := ctx(t)
	const ttl = 300 * time.Millisecond
	for _, step := range []struct {
		key  string
		want int64
	}{{"a", 1}, {"a", 2}, {"b", 1}, {"a", 3}} {
		if n, err := s.Increment(c, step.key, ttl); err != nil || n != step.want {
			t.Fatalf("Increment(%s) = %d, %v; want %d", step.key, n, err, step.want)
		}
	}
	if err := s.Sweep(c, time.Now()); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Increment(c, "a", ttl); err != nil || n != 4 {
		t.Fatalf("Increment(a) after a sweep = %d, %v; want 4 (sweep removed a live counter)", n, err)
	}
	time.Sleep(ttl + 100*time.Millisecond)
	if n, err := s.Increment(c, "a", ttl); err != nil || n != 1 {
		t.Fatalf("Increment(a) after its ttl = %d, %v; want 1", n, err)
	}
}

func testWatch(t *testing.T, s store.Store) {
	w, ok := s.(store.Watcher)
	if !ok {
		t.Skip("store does not implement store.Watcher")
	}
	c, cancel := context.WithCancel(ctx(t))
	changes := w.Watch(c)
	if _, err := s.SaveProjectVersion(c, "orders", []byte("x"), ""); err != nil {
		t.Fatal(err)
	}
	if err := s.SetActiveVersion(c, "orders", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.SetState(c, "orders/in", true); err != nil {
		t.Fatal(err)
	}
	want := []store.Change{{Kind: store.ChangeProject, Key: "orders"}, {Kind: store.ChangeProject, Key: "orders"}, {Kind: store.ChangeState, Key: "orders/in"}}
	for i, w := range want {
		select {
		case got := <-changes:
			if got != w {
				t.Fatalf("change %d = %+v, want %+v", i, got, w)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("change %d (%+v) not announced within 2s", i, w)
		}
	}
	cancel()
	deadline := time.After(2 * time.Second)
	for {
		select {
		case _, open := <-changes:
			if !open {
				return
			}
		case <-deadline:
			t.Fatal("watch channel not closed after its context ended")
		}
	}
}

func testClose(t *testing.T, s store.Store) {
	mustPut(t, s, store.Run{ID: id(1), Project: "p", Status: store.StatusRunning, StartedAt: base})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.PutRun(ctx(t), store.Run{ID: id(2)}); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("PutRun after Close: err = %v, want ErrClosed", err)
	}
}
