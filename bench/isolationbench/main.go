// Command isolationbench measures what running scripts in worker processes
// would cost (issue 19): the same webhook-style run (bench/webhookbench's
// script: parse a small JSON body, return a small object) through
// runtime.Engine in this process, and sent to 1 and to 2 worker processes
// (this binary, each running its own Engine; see worker.go) over unix
// sockets as length-prefixed JSON, from -c goroutines for -d each.
//
// Each of -rounds rounds measures the three legs, odd rounds in reverse
// order (the machine is shared and a leg can swing by a third). Workers are
// started afresh in each isolated leg, which gives their cold start (from
// fork/exec to the first answered run) and, after a warm-up, their resident
// memory (VmRSS). CPU per run is this process's (getrusage) plus, in the
// isolated legs, the live workers' (/proc/PID/stat, in 10 ms ticks): the
// machine's whole cost of a run, the callers' included.
//
// How to read it: each round prints runs/s and CPU µs per run per leg and
// the isolated legs' ratios to that round's in-process leg; the summary
// gives the medians (min–max) of those ratios over the rounds, each
// worker's RSS and the cold starts. Throughput ratio 0.25 means isolation
// leaves a quarter of today's throughput; the added CPU per run is a fixed
// toll of the socket hop, so it weighs less on a script that does more.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	goruntime "runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opsrunner/opsrunner/internal/baseline"
	"github.com/opsrunner/opsrunner/runtime"
	"github.com/opsrunner/opsrunner/scripts"
)

// wantJSON is what WebhookScript returns for WebhookBody.
const wantJSON = `{"ok":true,"id":42,"n":4}`

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400) // as agent.TuneGC, not imported: a worker would not link the agent
	}
	if len(os.Args) == 3 && os.Args[1] == workerArg {
		if err := serveWorker(os.Args[2]); err != nil {
			log.Fatalf("worker: %v", err)
		}
		return
	}
	rounds := flag.Int("rounds", 5, "rounds of the three legs; the summary gives medians and min–max over them")
	conc := flag.Int("c", 32, "concurrent callers (goroutines)")
	dur := flag.Duration("d", 3*time.Second, "measured duration of each leg")
	warm := flag.Duration("warm", 500*time.Millisecond, "warm-up of the engine and of each leg's workers")
	flag.Parse()
	if err := bench(*rounds, *conc, *dur, *warm); err != nil {
		log.Fatal(err)
	}
}

// loadProject deploys WebhookScript as project bench, operation hook.
func loadProject() (*scripts.Project, error) {
	p, err := scripts.Load("bench", 1, map[string][]byte{
		scripts.ManifestFile: []byte(baseline.WebhookManifest),
		"hook.js":            []byte(baseline.WebhookScript),
	}, scripts.LoadOptions{})
	if err != nil {
		return nil, fmt.Errorf("load project: %w", err)
	}
	return p, nil
}

// webhookEvent is the event triggers.WebhookEvent builds for
// webhookbench's request, headers resolved.
func webhookEvent() map[string]any {
	return map[string]any{
		"method":  "POST",
		"path":    "hook",
		"headers": map[string]any{"host": "127.0.0.1:8080", "content-length": strconv.Itoa(len(baseline.WebhookBody)), "content-type": "application/json"},
		"query":   map[string]any{},
		"body":    json.RawMessage(baseline.WebhookBody),
		"rawBody": baseline.WebhookBody,
	}
}

// checkRun returns an error unless a run succeeded with wantJSON.
func checkRun(status string, out []byte, runErr string) error {
	if status != "succeeded" || !bytes.Equal(out, []byte(wantJSON)) {
		return fmt.Errorf("run: status %s, result %s, error %q", status, out, runErr)
	}
	return nil
}

// leg is one measured leg; the worker fields are empty in process.
type leg struct {
	rps               float64
	cpu, workerCPU    time.Duration // per run: all, and the workers' share
	cold              []float64     // ms, per worker
	rssIdle, rssAfter []float64     // MiB per worker, after warm-up and after the measurement
}

func bench(rounds, conc int, dur, warm time.Duration) error {
	p, err := loadProject()
	if err != nil {
		return err
	}
	// A pool as large as the callers, as Config.Runtimes asks; workers get the same.
	e := runtime.New(runtime.Config{Runtimes: conc})
	defer e.Close()
	inv := runtime.Invocation{RunID: "bench", Project: p, Operation: "hook", Trigger: runtime.TriggerWebhook, Event: webhookEvent()}
	inProcess := func(int) func() error {
		return func() error {
			res := e.Run(context.Background(), inv)
			return checkRun(res.Status, res.JSON, fmt.Sprint(res.Err))
		}
	}
	if _, err := drive(conc, warm, nil, inProcess); err != nil {
		return fmt.Errorf("warm up in process: %w", err)
	}
	fmt.Printf("isolation benchmark: %d callers, %s per leg, %d rounds, GOMAXPROCS %d\n", conc, dur, rounds, goruntime.GOMAXPROCS(0))
	var tput, cpu [2][]float64
	var cold, rssIdle, rssAfter []float64
	for i := range rounds {
		var in leg
		var iso [2]leg
		legs := []func() error{
			func() (err error) { in, err = drive(conc, dur, nil, inProcess); return err },
			func() (err error) { iso[0], err = isolatedLeg(1, conc, dur, warm); return err },
			func() (err error) { iso[1], err = isolatedLeg(2, conc, dur, warm); return err },
		}
		if i%2 == 1 {
			slices.Reverse(legs)
		}
		for _, run := range legs {
			if err := run(); err != nil {
				return fmt.Errorf("round %d: %w", i+1, err)
			}
		}
		fmt.Printf("  round %d in-process: %7.0f runs/s  cpu %5.1f µs/run\n", i+1, in.rps, us(in.cpu))
		for k, r := range iso {
			tput[k], cpu[k] = append(tput[k], r.rps/in.rps), append(cpu[k], float64(r.cpu)/float64(in.cpu))
			cold, rssIdle, rssAfter = append(cold, r.cold...), append(rssIdle, r.rssIdle...), append(rssAfter, r.rssAfter...)
			fmt.Printf("  round %d %d worker(s): %7.0f runs/s  cpu %5.1f µs/run (workers' %5.1f)  ratios: runs/s %.2f, cpu/run %.2f  cold %s ms  rss idle %s, after %s MiB\n",
				i+1, k+1, r.rps, us(r.cpu), us(r.workerCPU), r.rps/in.rps, float64(r.cpu)/float64(in.cpu), list(r.cold, 0), list(r.rssIdle, 1), list(r.rssAfter, 1))
		}
	}
	self, err := rssMiB(os.Getpid())
	if err != nil {
		return err
	}
	fmt.Printf("  summary, isolated/in-process, median (min–max) of %d rounds: throughput 1 worker %s, 2 workers %s; cpu per run 1 worker %s, 2 workers %s\n",
		rounds, spread(tput[0], 2), spread(tput[1], 2), spread(cpu[0], 2), spread(cpu[1], 2))
	fmt.Printf("  summary, per worker process: rss %s MiB idle after warm-up, %s MiB after the measurement; cold start %s ms (this process: %.0f MiB)\n",
		spread(rssIdle, 1), spread(rssAfter, 1), spread(cold, 0), self)
	return nil
}

// isolatedLeg starts n workers one after the other, timing each one's cold
// start, warms them up and measures runs sent to them, the callers spread
// evenly over them. The workers are stopped on return.
func isolatedLeg(n, conc int, dur, warm time.Duration) (res leg, err error) {
	ev := webhookEvent()
	var ws []*worker
	defer func() {
		for _, w := range ws {
			if serr := w.stop(); err == nil {
				err = serr
			}
		}
	}()
	for range n {
		start := time.Now()
		w, err := startWorker(conc)
		if err != nil {
			return res, err
		}
		ws = append(ws, w)
		if err := w.run(ev); err != nil {
			return res, fmt.Errorf("first run: %w", err)
		}
		res.cold = append(res.cold, float64(time.Since(start))/float64(time.Millisecond))
	}
	caller := func(i int) func() error { return func() error { return ws[i%n].run(ev) } }
	if _, err := drive(conc, warm, ws, caller); err != nil {
		return res, fmt.Errorf("warm up %d workers: %w", n, err)
	}
	if res.rssIdle, err = workersRSS(ws); err != nil {
		return res, err
	}
	m, err := drive(conc, dur, ws, caller)
	if err != nil {
		return res, fmt.Errorf("%d workers: %w", n, err)
	}
	res.rps, res.cpu, res.workerCPU = m.rps, m.cpu, m.workerCPU
	res.rssAfter, err = workersRSS(ws)
	return res, err
}

// drive runs conc goroutines, the i-th calling caller(i)'s function until
// dur has passed or a call fails, and waits for them. It returns the runs
// per second and the CPU per run of this process and of workers.
func drive(conc int, dur time.Duration, workers []*worker, caller func(i int) func() error) (leg, error) {
	w0, err := workersCPU(workers)
	if err != nil {
		return leg{}, err
	}
	own0, start := baseline.CPUTime(), time.Now()
	var (
		runs   atomic.Int64
		failed atomic.Pointer[error]
		wg     sync.WaitGroup
	)
	for i := range conc {
		call := caller(i)
		wg.Go(func() {
			for failed.Load() == nil && time.Since(start) < dur {
				if err := call(); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
				runs.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed, own := time.Since(start), baseline.CPUTime()-own0
	if err := failed.Load(); err != nil {
		return leg{}, *err
	}
	w1, err := workersCPU(workers)
	if err != nil {
		return leg{}, err
	}
	n := time.Duration(max(runs.Load(), 1))
	return leg{rps: float64(n) / elapsed.Seconds(), cpu: (own + w1 - w0) / n, workerCPU: (w1 - w0) / n}, nil
}

// workersCPU is the user+system CPU time the workers have used, from
// /proc/PID/stat (fields 14 and 15, in USER_HZ ticks: 100 a second).
func workersCPU(ws []*worker) (time.Duration, error) {
	var sum time.Duration
	for _, w := range ws {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", w.pid()))
		if err != nil {
			return 0, fmt.Errorf("worker cpu: %w", err)
		}
		// After the command name, in parentheses: field 3 onwards.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 13 {
			return 0, fmt.Errorf("worker cpu: short /proc/%d/stat", w.pid())
		}
		for _, s := range f[11:13] {
			ticks, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("worker cpu: %w", err)
			}
			sum += time.Duration(ticks) * 10 * time.Millisecond
		}
	}
	return sum, nil
}

func workersRSS(ws []*worker) ([]float64, error) {
	var out []float64
	for _, w := range ws {
		m, err := rssMiB(w.pid())
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// rssMiB is process pid's resident set size (VmRSS) in MiB.
func rssMiB(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss: %w", err)
	}
	defer f.Close()
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err != nil {
				return 0, fmt.Errorf("rss of %d: %w", pid, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("rss: no VmRSS in /proc/%d/status", pid)
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// list formats xs with prec decimals, separated by slashes.
func list(xs []float64, prec int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatFloat(x, 'f', prec, 64)
	}
	return strings.Join(s, "/")
}

// spread formats the median and the range of xs with prec decimals.
func spread(xs []float64, prec int) string {
	s := slices.Sorted(slices.Values(xs))
	if len(s) == 0 {
		return "n/a"
	}
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', prec, 64) }
	return f((s[(len(s)-1)/2]+s[len(s)/2])/2) + " (" + f(s[0]) + "–" + f(s[len(s)-1]) + ")"
}
