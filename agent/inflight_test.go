package agent_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/agent"
)

// gate is an upstream that holds every request until n have arrived (or
// it is opened), then answers them all.
type gate struct {
	n       int32
	arrived atomic.Int32
	open    chan struct{}
	once    sync.Once
}

func newGate(t *testing.T, n int32) (*gate, string) {
	g := &gate{n: n, open: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.arrived.Add(1) >= g.n {
			g.release()
		}
		select {
		case <-g.open:
			w.Write([]byte(`{"ok": true}`))
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(g.release)
	return g, srv.URL
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

func TestTwoWorkersServeHundredsOfWaitingRuns(t *testing.T) {
	// 200 runs each wait for an upstream that answers only once all 200
	// are waiting: with runs holding their worker while they wait, at most
	// 2 would ever arrive and every run would time out. The timeout leaves
	// the last run ample time to start on a loaded machine (-race).
	const runs = 200
	_, url := newGate(t, runs)
	ta := startAgent(t, func(c *agent.Config) { c.Workers = 2 })
	ta.mustDeploy(t, "reach", reachProjectTimeout(t, `"127.0.0.1"`, "90s"))
	var wg sync.WaitGroup
	var failed atomic.Int32
	var firstFailure atomic.Value
	for range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := ta.do(t, http.MethodPost, "/hooks/reach/call", "application/json", []byte(`{"url": "`+url+`"}`), nil)
			if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"ok":true`) {
				failed.Add(1)
				firstFailure.CompareAndSwap(nil, string(r.Body))
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d runs failed, e.g. %v", failed.Load(), runs, firstFailure.Load())
	}
}

func TestPastMaxInflightAWebhookIsTurnedAwayWithRetryAfter(t *testing.T) {
	t.Parallel()
	g, url := newGate(t, 1<<30) // opened by hand
	ta := startAgent(t, func(c *agent.Config) { c.Workers = 1; c.MaxInflight = 3 })
	ta.mustDeploy(t, "reach", reachProject(t, `"127.0.0.1"`))
	var wg sync.WaitGroup
	answers := make(chan int, 3)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers <- ta.do(t, http.MethodPost, "/hooks/reach/call", "application/json", []byte(`{"url": "`+url+`"}`), nil).Status
		}()
	}
	for deadline := time.Now().Add(30 * time.Second); g.arrived.Load() < 3; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of 3 runs reached the upstream", g.arrived.Load())
		}
	}
	r := ta.do(t, http.MethodPost, "/hooks/reach/call", "application/json", []byte(`{"url": "`+url+`"}`), nil)
	if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" || r.errorCode(t) != "unavailable" {
		t.Fatalf("4th run: %d, Retry-After %q, %s; want 503 with Retry-After", r.Status, r.Header.Get("Retry-After"), r.Body)
	}
	g.release()
	wg.Wait()
	close(answers)
	for s := range answers {
		if s != http.StatusOK {
			t.Fatalf("a run in progress answered %d", s)
		}
	}
}
