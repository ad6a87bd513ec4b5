package agent

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// serveHealth starts an agent with one worker, the stuck grace given, and a
// project "stall" whose operation "op" has a 200ms time limit.
func serveHealth(t *testing.T, grace time.Duration) *Agent {
	t.Helper()
	cfg := Defaults()
	cfg.HTTPAddr, cfg.EmbeddedBrokerAddr, cfg.DataDir, cfg.AgentID = "127.0.0.1:0", "127.0.0.1:0", t.TempDir(), "health"
	cfg.Workers, cfg.StuckGrace = 1, Duration(grace)
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx) }() // owner: t's cleanup; ends with cancel
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("agent stopped with: %v", err)
		}
	})
	<-a.Started()
	files := map[string][]byte{
		"opsrunner.yaml": []byte("project: stall\noperations:\n  - name: op\n    script: op.js\n    timeout: 200ms\n"),
		"op.js":          []byte("function handle() { return 1; }\n"),
	}
	if _, err := a.Deploy(ctx, "stall", files); err != nil {
		t.Fatal(err)
	}
	return a
}

// readyz answers GET /readyz of a: its status and error message.
func readyz(t *testing.T, a *Agent) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + a.HTTPAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var answer struct {
		Error struct{ Code, Message string }
	}
	if resp.StatusCode != http.StatusOK {
		if err := json.Unmarshal(body, &answer); err != nil || answer.Error.Code != "unavailable" {
			t.Fatalf("readyz %d: %s, want an unavailable error", resp.StatusCode, body)
		}
	}
	return resp.StatusCode, answer.Error.Message
}

// selfCounts is a's own entry in its members view.
func selfCounts(t *testing.T, a *Agent) (running, stuck int) {
	t.Helper()
	view, err := a.Members(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range view.Members {
		if m.ID == a.cfg.AgentID {
			return m.Running, m.StuckRuns
		}
	}
	t.Fatalf("members %+v lack %s", view.Members, a.cfg.AgentID)
	return 0, 0
}

// A run that holds the only worker past its time limit plus the grace (as a
// script that escapes its time limit does; simulated here by holding the
// worker) turns /readyz to 503 with the reason, and counts as a stuck run
// in members; once the worker frees, both recover.
func TestStuckWorkerMakesAgentUnreadyUntilItFrees(t *testing.T) {
	a := serveHealth(t, 50*time.Millisecond)
	if code, msg := readyz(t, a); code != http.StatusOK {
		t.Fatalf("idle agent not ready: %d %s", code, msg)
	}
	p, _ := a.Project("stall")
	if err := a.workers.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	live := a.startRun(a.newRun(newRunID(), p, "op", "webhook"), p, "op")

	code, msg := readyz(t, a)
	if code != http.StatusOK {
		t.Errorf("readyz right after the worker was taken: %d %s, want 200 until the time limit and grace pass", code, msg)
	}
	if running, stuck := selfCounts(t, a); running != 1 || stuck != 0 {
		t.Errorf("members within the time limit: running %d, stuck %d; want 1, 0", running, stuck)
	}

	deadline := time.Now().Add(5 * time.Second)
	for code == http.StatusOK && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		code, msg = readyz(t, a)
	}
	want := regexp.MustCompile(`^no worker free for \d+m?s \(1 of 1 busy; longest timeout 200ms\)$`)
	if code != http.StatusServiceUnavailable || !want.MatchString(msg) {
		t.Fatalf("readyz with the worker stuck: %d %q, want 503 matching %s", code, msg, want)
	}
	if running, stuck := selfCounts(t, a); running != 1 || stuck != 1 {
		t.Errorf("members with the run stuck: running %d, stuck %d; want 1, 1", running, stuck)
	}

	live.end(nil)
	a.workers.Release()
	if code, msg := readyz(t, a); code != http.StatusOK {
		t.Errorf("readyz once the worker freed: %d %s", code, msg)
	}
	if running, stuck := selfCounts(t, a); running != 0 || stuck != 0 {
		t.Errorf("members once the run ended: running %d, stuck %d; want 0, 0", running, stuck)
	}
}

// A run going on for publishAfter is written to the store as running, once;
// its final record is never overwritten by that write, whichever comes first.
func TestLongRunIsPublishedAsRunningBeforeItsFinalRecord(t *testing.T) {
	a := serveHealth(t, time.Second)
	ctx := context.Background()
	p, _ := a.Project("stall")
	stored := func(id string) string {
		t.Helper()
		r, err := a.store.Run(ctx, id)
		if err != nil {
			return err.Error()
		}
		return r.Status
	}

	run := a.newRun(newRunID(), p, "op", "webhook")
	live := a.startRun(run, p, "op")
	a.publishActive(ctx, run.StartedAt.Add(publishAfter/2))
	if got := stored(run.ID); got == store.StatusRunning {
		t.Errorf("a run younger than %s is written at once", publishAfter)
	}
	a.publishActive(ctx, run.StartedAt.Add(publishAfter))
	if got := stored(run.ID); got != store.StatusRunning {
		t.Fatalf("after %s the store holds %q, want running", publishAfter, got)
	}
	done := run
	done.Status = store.StatusSucceeded
	live.end(func() { a.putRun(ctx, done) })
	a.publishActive(ctx, run.StartedAt.Add(2*publishAfter))
	if got := stored(run.ID); got != store.StatusSucceeded {
		t.Errorf("after the run ended the store holds %q, want succeeded", got)
	}

	// Ended before it was ever published: nothing is written after the end.
	short := a.newRun(newRunID(), p, "op", "webhook")
	lr := a.startRun(short, p, "op")
	snapshot := a.active.snapshot()
	lr.end(func() {
		s := short
		s.Status = store.StatusFailed
		a.putRun(ctx, s)
	})
	for _, l := range snapshot { // a publisher that listed the run before it ended
		l.publish(func(r store.Run) { a.putRun(ctx, r) })
	}
	if got := stored(short.ID); got != store.StatusFailed {
		t.Errorf("a late publish overwrote the final record: %q", got)
	}

	// A run whose running record is written already (a listener's) is not
	// written again.
	listened := a.newRun(newRunID(), p, "op", "listener")
	lr = a.startStoredRun(listened, p, "op")
	defer lr.end(nil)
	writes := 0
	for _, l := range a.active.snapshot() {
		l.publish(func(store.Run) { writes++ })
	}
	if writes != 0 {
		t.Errorf("a run stored as running at its start was written again %d times", writes)
	}
}

// Runs in progress merge into a store answer as the store would list them:
// filtered, newest first, bounded by the limit, a stored copy preferred.
func TestActiveRunsMergeIntoStoreAnswers(t *testing.T) {
	var reg activeRuns
	at := time.Now().UTC()
	for _, r := range []store.Run{
		{ID: "05", Project: "a", Operation: "x", Status: store.StatusRunning, StartedAt: at},
		{ID: "03", Project: "b", Operation: "y", Status: store.StatusRunning, StartedAt: at},
		{ID: "02", Project: "a", Operation: "x", Status: store.StatusRunning, StartedAt: at},
	} {
		reg.start(r, time.Second, false)
	}
	stored := []store.Run{
		{ID: "04", Project: "a", Status: store.StatusSucceeded},
		{ID: "02", Project: "a", Status: store.StatusRunning, Agent: "from-store"},
		{ID: "01", Project: "a", Status: store.StatusFailed},
	}
	ids := func(runs []store.Run) (out []string) {
		for _, r := range runs {
			out = append(out, r.ID)
		}
		return out
	}
	tests := []struct {
		name   string
		stored []store.Run
		f      store.RunFilter
		want   []string
	}{
		{"all, newest first", stored, store.RunFilter{}, []string{"05", "04", "03", "02", "01"}},
		{"by project", stored, store.RunFilter{Project: "a"}, []string{"05", "04", "02", "01"}},
		{"by status", nil, store.RunFilter{Status: store.StatusRunning, Operation: "x"}, []string{"05", "02"}},
		{"finished only", stored[:1], store.RunFilter{Status: store.StatusSucceeded}, []string{"04"}},
		{"limit", stored, store.RunFilter{Limit: 2}, []string{"05", "04"}},
		{"page before", stored[1:], store.RunFilter{Before: "04"}, []string{"03", "02", "01"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ids(reg.merge(tt.stored, tt.f))
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
	for _, r := range reg.merge(stored, store.RunFilter{}) {
		if r.ID == "02" && r.Agent != "from-store" {
			t.Errorf("run 02 taken from the registry, not the store: %+v", r)
		}
	}
}

// How long a run may take is its chain's time limits; how long a worker may
// be held is the longest of those, or of a listener delivery's filter and
// bound operations within its ack timeout.
func TestTimeLimitsOfRunsAndWorkers(t *testing.T) {
	manifest := `project: limits
operations:
  - name: a
    script: op.js
    timeout: 2s
    onSuccess: [b]
    onFailure: [roll back]
  - name: b
    script: op.js
    timeout: 3s
  - name: roll back
    type: acknowledge
    action: JBXRollback
listeners:
  - name: both
    destination: /queue/both
    filter: filter.js
    ackTimeout: 20s
    operations: [a, b]
  - name: one
    destination: /queue/one
    operations: [b]
`
	p, err := scripts.Load("limits", 1, map[string][]byte{
		"opsrunner.yaml": []byte(manifest),
		"op.js":          []byte("function handle() { return 1; }\n"),
		"filter.js":      []byte("function filter() { return true; }\n"),
	}, scripts.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		op   string
		want time.Duration
	}{{"a", 5 * time.Second}, {"b", 3 * time.Second}, {"unknown", scripts.DefaultOperationTimeout}} {
		if got := chainLimit(p, tt.op); got != tt.want {
			t.Errorf("chainLimit(%s) = %s, want %s", tt.op, got, tt.want)
		}
	}
	for _, tt := range []struct {
		listener string
		want     time.Duration
	}{{"both", 20 * time.Second}, {"one", 3 * time.Second}} {
		l, _ := p.Listener(tt.listener)
		if got := deliveryLimit(p, l); got != tt.want {
			t.Errorf("deliveryLimit(%s) = %s, want %s", tt.listener, got, tt.want)
		}
	}
	a := &Agent{}
	a.projects.Store(&map[string]*scripts.Project{"limits": p})
	if got := a.longestLimit(); got != 20*time.Second {
		t.Errorf("longestLimit = %s, want 20s (the listener both)", got)
	}
}

// BenchmarkActiveRuns measures what a run pays to be listed while it runs:
// registering and unregistering it, from parallel goroutines.
func BenchmarkActiveRuns(b *testing.B) {
	var reg activeRuns
	var next atomic.Int64
	run := store.Run{Project: "p", Operation: "op", Status: store.StatusRunning, StartedAt: time.Now()}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := run
		r.ID = strconv.FormatInt(next.Add(1), 10) // one id per goroutine: one run at a time each
		for pb.Next() {
			reg.start(r, time.Second, false).end(nil)
		}
	})
}
