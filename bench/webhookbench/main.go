// Command webhookbench measures webhook throughput and latency with wrk:
// an opsrunner webhook whose script parses a JSON body and returns a small
// object (run history on), against a bare echo handler doing the same in Go,
// in the same run. Both are measured in several rounds, alternating which
// goes first (this machine is shared and a single run can swing by a
// third); it prints each round and the medians of the rounds' ratios.
// A third leg, a pooled goja handler with none of opsrunner's guarantees,
// shows the ceiling of running JS per request on the machine at hand.
//
// With -bin the agent measured is a process of that opsrunner binary, and
// with -baseline-bin a second agent process (another build) is measured
// alternately with the others, its CPU time per request read from /proc:
//
//	go run ./bench/webhookbench -bin /tmp/new -baseline-bin /tmp/old -rounds 6 -probe=false
//
// With -history N it sends N webhook requests to one agent process of -bin
// with run retention -retention, and reports the agent's RSS (sampled every
// second), the store file against the retained runs' JSON and each run
// filter's time through the API (see history.go).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/internal/baseline"
)

func main() {
	duration := flag.Duration("d", 10*time.Second, "wrk duration per target")
	conns := flag.Int("c", 32, "wrk connections")
	threads := flag.Int("t", 2, "wrk threads")
	rounds := flag.Int("rounds", 3, "rounds of both measurements; the ratios reported are their medians")
	withProbe := flag.Bool("probe", true, "also measure a pooled goja handler without opsrunner's guarantees (baseline.GojaHandler), the ceiling of a JS run per request")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of this process during the first opsrunner measurement to `file`")
	bin := flag.String("bin", "", "measure the agent of this opsrunner `binary`, run as a process (`serve`), instead of one in this process")
	baselineBin := flag.String("baseline-bin", "", "also measure the agent of each of these opsrunner `binaries` (comma-separated) as a process, alternated with the other legs, and report the ratios of opsrunner to each")
	history := flag.Int("history", 0, "instead: send this many webhook requests to one agent process of -bin with -retention, sampling its RSS every second, then report its peak RSS, store file against the retained runs and each filter query's time through the API")
	retention := flag.Int("retention", 10_000, "run_retention.max_runs of the -history agent")
	flag.Parse()
	agent.TuneGC(0) // as `opsrunner serve` does
	if *history > 0 {
		if err := historyMode(*bin, *history, *retention, *conns); err != nil {
			log.Fatal(err)
		}
		return
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		log.Fatal("wrk not found: install it with `make test-deps` (Debian package wrk)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	legs, stop, err := startLegs(ctx, *withProbe, *bin, *baselineBin)
	defer stop()
	if err != nil {
		log.Fatal(err)
	}
	script, err := writeScript()
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(script)

	// Warm all up, then measure in rounds; odd rounds run them in reverse.
	for _, l := range legs {
		if _, err := runWrk(l.url, script, 2*time.Second, *conns, *threads, l.cpu); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("webhook benchmark: wrk -t%d -c%d -d%s, POST JSON → parse → small object, %d rounds\n", *threads, *conns, *duration, *rounds)
	results := make([][]result, len(legs)) // by leg, then round
	for i := range *rounds {
		order := make([]int, len(legs))
		for j := range order {
			order[j] = j
		}
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, j := range order {
			stopProfile, err := startProfile(*cpuprofile, i == 0 && legs[j].name == legOpsrunner && *bin == "")
			if err != nil {
				log.Fatal(err)
			}
			r, err := runWrk(legs[j].url, script, *duration, *conns, *threads, legs[j].cpu)
			stopProfile()
			if err != nil {
				log.Fatal(err)
			}
			results[j] = append(results[j], r)
		}
		for j, l := range legs {
			r, b := results[j][i], results[0][i]
			fmt.Printf("  round %d %-20s: %9.0f req/s  p50 %-9s p99 %-9s errors %d  cpu %s/req  (ratios %.2f, p99 %.2f)\n", i+1, l.name,
				r.rps, r.p50, r.p99, r.errors, r.cpu.Round(100*time.Nanosecond), r.rps/b.rps, float64(r.p99)/float64(b.p99))
		}
	}
	report(legs, results)
}

// Leg names.
const (
	legBare      = "bare echo handler"
	legProbe     = "pooled goja probe"
	legOpsrunner = "opsrunner webhook"
	legBaseline  = "baseline " // and the binary's name
)

// leg is one target measured in each round: its webhook URL and the CPU
// time of the process serving it.
type leg struct {
	name string
	url  string
	cpu  func() time.Duration
}

// startLegs starts what the legs measure: the bare echo handler (first),
// the probe, the opsrunner agent (in this process, or of bin) and the
// agent of baselineBin. stop ends them all; it is never nil.
func startLegs(ctx context.Context, withProbe bool, bin, baselineBin string) ([]leg, func(), error) {
	var stops []func()
	stop := func() {
		for _, s := range slices.Backward(stops) {
			s()
		}
	}
	bare, err := serve(ctx, baseline.EchoHandler())
	if err != nil {
		return nil, stop, err
	}
	legs := []leg{{legBare, bare, baseline.CPUTime}}
	if withProbe {
		probe, err := serve(ctx, baseline.GojaHandler())
		if err != nil {
			return nil, stop, err
		}
		legs = append(legs, leg{legProbe, probe, baseline.CPUTime})
	}
	if bin == "" {
		hook, stopAgent, err := startAgent(ctx)
		if err != nil {
			return nil, stop, err
		}
		stops = append(stops, stopAgent)
		legs = append(legs, leg{legOpsrunner, hook, baseline.CPUTime})
	}
	bins := []struct{ name, bin string }{{legOpsrunner, bin}}
	for b := range strings.SplitSeq(baselineBin, ",") {
		bins = append(bins, struct{ name, bin string }{legBaseline + filepath.Base(b), b})
	}
	for _, b := range bins {
		if b.bin == "" {
			continue
		}
		p, hook, err := startAgentProc(b.bin, "", "")
		if err != nil {
			return nil, stop, fmt.Errorf("%s: %w", b.name, err)
		}
		stops = append(stops, p.stop)
		legs = append(legs, leg{b.name, hook, p.cpu})
	}
	return legs, stop, nil
}

// report prints the medians of the rounds' ratios: each leg to the bare
// handler, and opsrunner to the baseline binary, with their spread.
func report(legs []leg, results [][]result) {
	ratios := func(a, b []result, f func(result) float64) []float64 {
		out := make([]float64, len(a))
		for i := range a {
			out[i] = f(a[i]) / f(b[i])
		}
		return out
	}
	rps := func(r result) float64 { return r.rps }
	p99 := func(r result) float64 { return float64(r.p99) }
	cpu := func(r result) float64 { return float64(r.cpu) }
	ops := slices.IndexFunc(legs, func(l leg) bool { return l.name == legOpsrunner })
	for j, l := range legs[1:] {
		fmt.Printf("  throughput ratio %s/bare = %s\n", l.name, spread(ratios(results[j+1], results[0], rps)))
		fmt.Printf("  p99 ratio %s/bare        = %s\n", l.name, spread(ratios(results[j+1], results[0], p99)))
	}
	for j, l := range legs {
		if strings.HasPrefix(l.name, legBaseline) && ops >= 0 {
			fmt.Printf("  opsrunner/%s: throughput %s, CPU per request %s\n", l.name,
				spread(ratios(results[ops], results[j], rps)), spread(ratios(results[ops], results[j], cpu)))
		}
	}
	fmt.Println("  (targets: opsrunner/bare throughput ≥ 0.80, p99 ≤ 1.50)")
}

// spread formats the median of xs and their range.
func spread(xs []float64) string {
	return fmt.Sprintf("%.2f (%.2f–%.2f)", median(xs), slices.Min(xs), slices.Max(xs))
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// startProfile starts a CPU profile written to path when on; the returned
// function stops it. An empty path profiles nothing.
func startProfile(path string, on bool) (stop func(), err error) {
	if path == "" || !on {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// serve serves h on a free loopback port and returns its webhook URL.
func serve(ctx context.Context, h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	go func() { <-ctx.Done(); srv.Close() }()
	return "http://" + ln.Addr().String() + baseline.EchoPath, nil
}

// startAgent runs an agent in this process with a webhook doing the same
// work in JS.
func startAgent(ctx context.Context) (string, func(), error) {
	dir, err := os.MkdirTemp("", "webhookbench")
	if err != nil {
		return "", nil, err
	}
	cfg := agent.Defaults()
	cfg.HTTPAddr, cfg.EmbeddedBrokerAddr, cfg.DataDir, cfg.AgentID = "127.0.0.1:0", "127.0.0.1:0", dir, "bench"
	cfg.RunDurability = os.Getenv("OPSRUNNER_RUN_DURABILITY") // as serve reads it: sync (default) or batched
	a, err := agent.New(cfg, nil)
	if err != nil {
		return "", nil, err
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Serve(actx) }()
	<-a.Started()
	stop := func() { cancel(); <-done; os.RemoveAll(dir) }
	base := "http://" + a.HTTPAddr()
	if err := deploy(base); err != nil {
		stop()
		return "", nil, err
	}
	return base + "/hooks/bench/hook", stop, nil
}

func writeScript() (string, error) {
	f, err := os.CreateTemp("", "wrk-*.lua")
	if err != nil {
		return "", err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "wrk.method = \"POST\"\nwrk.body = %q\nwrk.headers[\"Content-Type\"] = \"application/json\"\n", baseline.WebhookBody)
	return f.Name(), err
}

type result struct {
	rps      float64
	p50, p99 time.Duration
	errors   int
	cpu      time.Duration // the serving process's CPU time per request (wrk runs apart)
}

var (
	reRPS    = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	reP      = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\b`)
	reErrors = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)|Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// runWrk runs wrk against url for d; cpu is the CPU time of the process
// serving url, charged to the requests.
func runWrk(url, script string, d time.Duration, conns, threads int, cpu func() time.Duration) (result, error) {
	cpu0 := cpu()
	out, err := exec.Command("wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", d.String(),
		"--latency", "-s", script, url).CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	var r result
	m := reRPS.FindSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk output:\n%s", out)
	}
	r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	if r.rps > 0 {
		r.cpu = time.Duration(float64(cpu()-cpu0) / (r.rps * d.Seconds()))
	}
	for _, p := range reP.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(p[2]), 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[string(p[3])]
		dur := time.Duration(v * float64(unit)).Round(time.Microsecond)
		if string(p[1]) == "50" {
			r.p50 = dur
		} else {
			r.p99 = dur
		}
	}
	for _, e := range reErrors.FindAllSubmatch(out, -1) {
		for _, g := range e[1:] {
			n, _ := strconv.Atoi(strings.TrimSpace(string(g)))
			r.errors += n
		}
	}
	return r, nil
}
