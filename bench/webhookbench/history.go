package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opsrunner/opsrunner/internal/baseline"
	"github.com/opsrunner/opsrunner/store"
)

// historyMode sends n webhook requests from conns keep-alive connections to
// one agent process of bin with run_retention.max_runs retention, samples
// its VmRSS every second, and reports the peak, the store file against the
// retained runs' JSON (as historybench counts it) and each filter query's
// time through GET /api/v1/runs.
func historyMode(bin string, n, retention, conns int) error {
	if bin == "" {
		return errors.New("-history needs -bin: go build -o /tmp/opsrunner ./cmd/opsrunner")
	}
	p, hook, err := startAgentProc(bin, "", fmt.Sprintf("run_retention:\n  max_runs: %d\n", retention))
	if err != nil {
		return err
	}
	defer p.stop()
	fmt.Printf("history: %d webhook requests, %d connections, agent %s with run retention %d\n", n, conns, bin, retention)
	ctx, cancel := context.WithCancel(context.Background())
	peak := make(chan int64, 1)
	go func() { peak <- sampleRSS(ctx, p) }() // owner: historyMode; ends with cancel
	began, cpu0 := time.Now(), p.cpu()
	failed, err := drive(hook, n, conns, func(done int) {
		fmt.Printf("%10d requests %6s  RSS %6.1f MiB  store file %6.1f MiB\n", done, time.Since(began).Round(time.Second),
			mib(p.rss()), mib(fileSize(p.storePath())))
	})
	cancel()
	top := <-peak
	if err != nil {
		return err
	}
	took := time.Since(began)
	fmt.Printf("sent %d in %v (%.0f req/s, %d failed), agent CPU %.1f µs per request\n", n, took.Round(time.Second),
		float64(n)/took.Seconds(), failed, float64((p.cpu()-cpu0).Microseconds())/float64(n))
	fmt.Printf("agent peak RSS %.1f MiB (sampled every second), now %.1f MiB\n", mib(top), mib(p.rss()))
	kept, size, cursor, err := retainedRuns(p.base)
	if err != nil {
		return err
	}
	file := fileSize(p.storePath())
	fmt.Printf("stored runs %d, their JSON %.1f MiB (%.0f B/run); store file %.1f MiB = %.2fx\n",
		kept, mib(size), float64(size)/float64(max(kept, 1)), mib(file), float64(file)/float64(max(size, 1)))
	return timeQueries(p.base, cursor)
}

func (p *agentProc) storePath() string { return filepath.Join(p.dir, "data", "opsrunner.db") }

// sampleRSS reads p's RSS every second until ctx ends and returns the
// highest.
func sampleRSS(ctx context.Context, p *agentProc) int64 {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	top := p.rss()
	for {
		select {
		case <-ctx.Done():
			return max(top, p.rss())
		case <-t.C:
			top = max(top, p.rss())
		}
	}
}

// drive POSTs the benchmark's body to hook n times from conns goroutines
// with keep-alive connections; progress is called at each tenth. It returns
// how many requests did not answer 200, and stops at the first transport
// error.
func drive(hook string, n, conns int, progress func(done int)) (failed int64, err error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}, Timeout: time.Minute}
	var next, bad atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, conns)
	step := int64(max(n/10, 1))
	for c := range conns {
		wg.Add(1)
		go func() { // owner: drive; ends after n requests in all, or an error
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				resp, err := client.Post(hook, "application/json", strings.NewReader(baseline.WebhookBody))
				if err != nil {
					errs[c] = err
					next.Store(int64(n)) // the others stop too
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					bad.Add(1)
				}
				if i%step == 0 {
					progress(int(i))
				}
			}
		}()
	}
	wg.Wait()
	client.CloseIdleConnections()
	return bad.Load(), errors.Join(errs...)
}

// retainedRuns pages through every run the agent keeps: their count, JSON
// bytes (each run's json.Marshal and its id, as historybench counts them)
// and the id 5,000 runs back (a cursor for the queries).
func retainedRuns(base string) (n int, size int64, cursor string, err error) {
	before := ""
	for {
		var page struct {
			Runs []store.Run `json:"runs"`
			Next string      `json:"next"`
		}
		if err := getJSON(base+"/api/v1/runs?limit=1000&before="+url.QueryEscape(before), &page); err != nil {
			return 0, 0, "", err
		}
		for _, r := range page.Runs {
			b, err := json.Marshal(r)
			if err != nil {
				return 0, 0, "", err
			}
			n, size = n+1, size+int64(len(b)+len(r.ID))
			if n == 5000 {
				cursor = r.ID
			}
		}
		if page.Next == "" || len(page.Runs) == 0 {
			return n, size, cursor, nil
		}
		before = page.Next
	}
}

func getJSON(u string, v any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// timeQueries times each run filter the API offers through HTTP: the
// median and slowest of 21 calls, each a GET with its answer read.
func timeQueries(base, cursor string) error {
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	for _, q := range []string{
		"", "project=bench", "project=nosuch", "operation=hook", "operation=nosuch",
		"status=succeeded", "status=failed", "status=failed&operation=nosuch",
		"project=bench&operation=hook&status=succeeded", "trigger=webhook", "trigger=schedule",
		"outcome=committed", "schedule=nightly", "messageId=nosuch", "since=1s", "since=" + future,
		"before=" + cursor, "before=" + cursor + "&operation=hook", "before=" + cursor + "&status=failed",
	} {
		var took []time.Duration
		var got int
		for range 21 {
			var page struct {
				Runs []json.RawMessage `json:"runs"`
			}
			t0 := time.Now()
			if err := getJSON(base+"/api/v1/runs?"+q, &page); err != nil {
				return err
			}
			took = append(took, time.Since(t0))
			got = len(page.Runs)
		}
		slices.Sort(took)
		fmt.Printf("  %-50s %4d runs  median %8.3f ms  max %8.3f ms\n", cmp.Or(q, "(no filter)"), got,
			float64(took[10].Microseconds())/1000, float64(took[20].Microseconds())/1000)
	}
	return nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
