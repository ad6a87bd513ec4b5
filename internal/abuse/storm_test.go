package abuse

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The runaway storm: stormRuns concurrent calls of a script that never
// ends by itself, each giving up after stormGiveUp.
const (
	stormRuns    = 1000
	stormTimeout = time.Second     // the runaway operation's timeout
	stormGiveUp  = 3 * time.Second // when a storm client stops waiting
	stormBound   = time.Minute     // the whole test, warm-up and recovery included
	// healthzWithin bounds each /healthz answer during the storm.
	healthzWithin = 2 * time.Second
	// rssSlack is how far above its idle level the agent's RSS may stay
	// once the storm is over: room for the heap's scavenging lag, far below
	// what a thousand retained runs (a runtime each) would hold.
	rssSlack = 150 << 20
	// rssSettle is how long the RSS gets to come back.
	rssSettle = 20 * time.Second
)

// TestRunawayStorm: 1,000 concurrent runaway scripts (timeout 1s, clients
// giving up after 3s) on a 2-worker agent. Every storm call that is
// answered gets a timeout or an overload answer; /healthz answers
// throughout; another project's webhook answers during the storm, once the
// storm's clients have given up, and right after; and the agent's RSS comes
// back to within rssSlack of its idle level.
func TestRunawayStorm(t *testing.T) {
	start := time.Now()
	f := newFixture(t)
	a := f.agent(t)
	deployOrFatal(t, a, "storm", project("storm", stormTimeout, `function handle() { while (true) {} }`))
	idle := warmUp(t, a)

	ctx, stopProbe := context.WithCancel(context.Background())
	probed := make(chan probeReport, 1)
	go func() { probed <- probe(ctx, a) }()
	canaryDuring := make(chan result, 1)
	go func() {
		time.Sleep(500 * time.Millisecond) // into the storm
		canaryDuring <- callCanary(a, stormGiveUp+canaryWithin)
	}()
	tally := storm(a)
	cd := <-canaryDuring
	stopProbe()
	p := <-probed

	t.Logf("storm answers: %s", tally)
	t.Logf("during the storm: /healthz %d probes, %d failed, slowest %s; RSS peak %d MiB (idle %d MiB)",
		p.probes, len(p.failures), p.slowest.Round(time.Millisecond), p.peakRSS>>20, idle>>20)
	tally.check(t)
	if len(p.failures) > 0 {
		t.Errorf("/healthz failed %d times during the storm, first: %s", len(p.failures), p.failures[0])
	}
	if cd.err != nil || cd.status != http.StatusOK {
		t.Errorf("canary during the storm: %v %d %.200s", cd.err, cd.status, cd.body)
	} else {
		t.Logf("canary during the storm answered after %s", cd.took.Round(time.Millisecond))
	}
	a.checkServing(t)
	checkRSSReturns(t, a, idle)
	if took := time.Since(start); took > stormBound {
		t.Errorf("the storm test took %s, want at most %s", took.Round(time.Second), stormBound)
	}
}

// warmUp runs the canary and the runaway script a few times, so that the
// idle level includes pools and caches, and returns the RSS after it.
func warmUp(t *testing.T, a *agent) int64 {
	t.Helper()
	for i := 0; i < 20; i++ {
		if r := callCanary(a, canaryWithin); r.err != nil || r.status != http.StatusOK {
			t.Fatalf("warm-up canary: %v %d %.200s", r.err, r.status, r.body)
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Go(func() { post(a, "/hooks/storm/op", stormTimeout+5*time.Second) })
	}
	wg.Wait()
	idle, err := a.rss()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("idle RSS after warm-up: %d MiB", idle>>20)
	return idle
}

// callCanary calls the canary's webhook and waits at most within.
// callCanary calls the canary's webhook within the given time, as a
// well-behaved client does: a 503 with Retry-After (the agent has
// max_inflight runs in progress) is tried again after the time it says.
func callCanary(a *agent, within time.Duration) result {
	start := time.Now()
	for {
		r := post(a, "/hooks/canary/op", within-time.Since(start))
		retry, err := strconv.Atoi(r.header.Get("Retry-After"))
		if r.err != nil || r.status != http.StatusServiceUnavailable || err != nil {
			r.took = time.Since(start)
			return r
		}
		wait := min(time.Duration(retry)*time.Second, within-time.Since(start))
		if wait <= 0 {
			return r
		}
		time.Sleep(wait)
	}
}

// stormTally counts the storm's outcomes: "<status> <code>" of each
// answer, or "gave up" for a client that stopped waiting. leak is the
// first answer that leaked Go internals.
type stormTally struct {
	counts map[string]int
	leak   string
}

func (s stormTally) String() string {
	keys := make([]string, 0, len(s.counts))
	for k := range s.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, s.counts[k])
	}
	return strings.Join(parts, ", ")
}

// check fails t for any storm answer other than a timeout (504), an
// overload (503, 429) or a client that gave up, and for a leak.
func (s stormTally) check(t *testing.T) {
	t.Helper()
	for k, n := range s.counts {
		if k != "gave up" && !strings.HasPrefix(k, "504 timeout") && !strings.HasPrefix(k, "503 ") && !strings.HasPrefix(k, "429 ") {
			t.Errorf("%d storm calls answered %q, want a timeout, an overload answer or none", n, k)
		}
	}
	if s.leak != "" {
		t.Errorf("a storm answer leaks Go internals: %.300s", s.leak)
	}
}

// storm fires stormRuns concurrent calls of the runaway webhook, each on
// its own connection and giving up after stormGiveUp, and waits for all.
func storm(a *agent) stormTally {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	var (
		mu    sync.Mutex
		tally = stormTally{counts: make(map[string]int)}
		wg    sync.WaitGroup
	)
	for i := 0; i < stormRuns; i++ {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), stormGiveUp)
			defer cancel()
			got, err := a.doWith(ctx, client, request{path: "/hooks/storm/op", header: map[string]string{"Content-Type": "application/json"}, body: `{}`})
			key := fmt.Sprintf("%d %s", got.status, got.code)
			if err != nil {
				key = "gave up"
				if !errors.Is(err, context.DeadlineExceeded) {
					key = "error: " + err.Error()
				}
			}
			mu.Lock()
			defer mu.Unlock()
			tally.counts[key]++
			if err == nil && tally.leak == "" && goInternals.Match(got.body) {
				tally.leak = string(got.body)
			}
		})
	}
	wg.Wait()
	return tally
}

// probeReport is what probe saw.
type probeReport struct {
	probes   int
	failures []string
	slowest  time.Duration
	peakRSS  int64
}

// probe calls /healthz and samples the RSS every 200 ms until ctx ends.
func probe(ctx context.Context, a *agent) probeReport {
	var p probeReport
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return p
		case <-tick.C:
		}
		if rss, err := a.rss(); err == nil && rss > p.peakRSS {
			p.peakRSS = rss
		}
		hctx, cancel := context.WithTimeout(context.Background(), healthzWithin)
		got, err := a.do(hctx, request{method: http.MethodGet, path: "/healthz"})
		cancel()
		p.probes++
		switch {
		case err != nil:
			p.failures = append(p.failures, err.Error())
		case got.status != http.StatusOK:
			p.failures = append(p.failures, fmt.Sprintf("%d %.200s", got.status, got.body))
		}
		p.slowest = max(p.slowest, got.took)
	}
}

// checkRSSReturns waits up to rssSettle for the agent's RSS to come back
// to within rssSlack of idle.
func checkRSSReturns(t *testing.T, a *agent, idle int64) {
	t.Helper()
	bound := idle + rssSlack
	start := time.Now()
	for {
		rss, err := a.rss()
		if err != nil {
			t.Fatal(err)
		}
		if rss <= bound {
			t.Logf("RSS back to %d MiB after %s (idle %d MiB, bound %d MiB)",
				rss>>20, time.Since(start).Round(100*time.Millisecond), idle>>20, bound>>20)
			return
		}
		if time.Since(start) > rssSettle {
			t.Errorf("RSS %d MiB %s after the storm, want at most idle %d MiB + %d MiB",
				rss>>20, rssSettle, idle>>20, rssSlack>>20)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}
