// Command iobench measures an I/O-bound webhook with wrk: each request makes
// the server GET a local upstream that answers after 20 ms with about 1 KiB
// of JSON, and answers with part of it ({"price": 42.5}). Three servers do
// the same work in the same run under the same wrk load: a bare Go net/http
// handler, a plain Node.js http server with its built-in fetch (one
// process, single-threaded), and an opsrunner agent (`opsrunner serve`)
// whose webhook script awaits fetch, once per run durability mode asked for
// (run history on: every webhook run is recorded). Each server runs as a
// process of its own so that its CPU time per request and its RSS are its
// alone; the upstream runs in this process. Legs run in several rounds,
// alternating their order (this machine is shared and one leg's figure can
// swing by a third between runs); the program prints each round's req/s,
// p50 and p99 latency, non-2xx answers (any is a failure: the run stops),
// socket errors (wrk's timeouts, 10 s by default, printed with a warning),
// CPU per request and RSS, and then the medians of the rounds'
// opsrunner/Go and opsrunner/Node.js ratios with their spread. Before
// measuring, one request to each server must be answered 200 with the
// expected body (a server that cannot reach the upstream may answer 200
// with an error), and each leg must have called the upstream once per
// answer. With -base-agent, an older opsrunner build is measured too, in
// the same rounds, and each mode's ratios to it are printed (CPU per
// request among them: the figure load disturbs least). With -cpuprofile
// the opsrunner legs run in this process instead, to be profiled. Run by
// `make bench`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// options are the command's flags.
type options struct {
	load
	rounds     int
	durability []string // run durability modes, one opsrunner leg each
	agentBin   string   // a built opsrunner; empty: build one
	baseBin    string   // an older opsrunner measured as well, leg by leg; empty: none
	node       string   // the node binary; empty: skip the Node.js leg
	cpuProfile string   // profile the first opsrunner leg, run in this process, into this file
	serveGo    string   // run as the Go baseline on this address (internal)
	upstream   string   // the upstream the Go baseline calls (internal)
}

func parseFlags() options {
	var o options
	flag.DurationVar(&o.duration, "d", 10*time.Second, "wrk duration per leg and round")
	flag.IntVar(&o.conns, "c", 200, "wrk connections")
	flag.IntVar(&o.threads, "t", 2, "wrk threads")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Second, "wrk's request timeout (its default, 2s, would leave a slow server's slowest answers out of its p99)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of every leg; the ratios reported are their medians")
	durability := flag.String("durability", "sync,batched", "run durability modes to measure, comma-separated (sync, batched): one opsrunner leg each")
	flag.StringVar(&o.agentBin, "agent", "", "opsrunner binary to run (default: go build ./cmd/opsrunner into a temporary directory)")
	flag.StringVar(&o.baseBin, "base-agent", "", "also measure this opsrunner `binary` (an older build, say) in every round, one leg per durability mode, and print each mode's ratio to it")
	flag.StringVar(&o.node, "node", "node", "Node.js binary; the Node.js leg is skipped when it is not found")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "run the opsrunner legs in this process (the agent has no profiling endpoint; their CPU and RSS are then this process's) and write a CPU profile of the first one's first round to `file`")
	flag.StringVar(&o.serveGo, "serve-go", "", "internal: serve the Go baseline on this address")
	flag.StringVar(&o.upstream, "upstream", "", "internal: the upstream URL of -serve-go")
	flag.Parse()
	for _, m := range strings.Split(*durability, ",") {
		if m = strings.TrimSpace(m); m != "" {
			o.durability = append(o.durability, m)
		}
	}
	return o
}

func main() {
	o := parseFlags()
	if o.serveGo != "" {
		if err := serveGo(o.serveGo, o.upstream); err != nil {
			fmt.Fprintln(os.Stderr, "go handler:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "iobench:", err)
		os.Exit(1)
	}
}

// server is a server under test.
type server interface {
	// pid is the process whose /proc entries hold the server's CPU and RSS.
	pid() int
	// stop stops the server and blocks until it has; idempotent.
	stop()
	// logTail is the end of the server's log, for error messages.
	logTail() string
}

// leg is one server under test and its measurements, one per round.
type leg struct {
	server
	name   string
	url    string // where wrk sends its requests
	rounds []measurement
	// profile: write -cpuprofile while measuring this leg's first round.
	profile bool
}

// measurement is one leg's wrk run and what its server used meanwhile.
type measurement struct {
	wrkResult
	cpu time.Duration // the server process's CPU time per request
	rss int           // the server process's RSS after the round, KiB
}

func run(ctx context.Context, o options) error {
	if _, err := exec.LookPath("wrk"); err != nil {
		return fmt.Errorf("wrk not found: install it with `make test-deps` (Debian package wrk)")
	}
	if len(o.durability) == 0 {
		return fmt.Errorf("-durability names no mode")
	}
	dir, err := os.MkdirTemp("", "iobench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if o.script, err = writeWrkScript(dir); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	up, err := startUpstream(ctx)
	if err != nil {
		return err
	}
	legs, nodeVersion, err := startLegs(dir, o, up.url)
	defer func() {
		for _, l := range legs {
			l.stop()
		}
	}()
	if err != nil {
		return err
	}
	for _, l := range legs {
		if err := checkAnswer(l.url); err != nil {
			return fmt.Errorf("%s: %w\n%s", l.name, err, l.logTail())
		}
		if _, err := measure(ctx, l, o.load, 2*time.Second, up); err != nil { // warm-up
			return err
		}
	}
	printHeader(o, nodeVersion)
	for i := range o.rounds {
		order := slices.Clone(legs)
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, l := range order {
			m, err := measureRound(ctx, l, o, i, up)
			if err != nil {
				return err
			}
			l.rounds = append(l.rounds, m)
		}
		for _, l := range legs {
			printRound(i, l, nameWidth(legs))
		}
	}
	printSummary(legs)
	return nil
}

// startLegs starts the Go baseline, the Node.js one when node is found and
// an agent per durability mode. nodeVersion is empty when Node.js is
// skipped. The legs started are returned even with an error, to be stopped.
func startLegs(dir string, o options, upstreamURL string) (legs []*leg, nodeVersion string, err error) {
	add := func(c *child, err error) error {
		if err == nil {
			legs = append(legs, &leg{server: c, name: c.name, url: c.url})
		}
		return err
	}
	if err := add(startGo(dir, upstreamURL)); err != nil {
		return legs, "", err
	}
	if node, err := exec.LookPath(o.node); err != nil {
		fmt.Printf("%s not found: the Node.js leg is skipped\n", o.node)
	} else {
		v, err := exec.Command(node, "--version").Output()
		if err != nil {
			return legs, "", fmt.Errorf("node --version: %w", err)
		}
		nodeVersion = strings.TrimSpace(string(v))
		if err := add(startNode(dir, node, upstreamURL)); err != nil {
			return legs, "", err
		}
	}
	bin := o.agentBin
	if bin == "" && o.cpuProfile == "" {
		bin = dir + "/opsrunner"
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/opsrunner").CombinedOutput(); err != nil {
			return legs, "", fmt.Errorf("go build ./cmd/opsrunner (run from the repository's root): %v\n%s", err, out)
		}
	}
	for i, mode := range o.durability {
		if o.cpuProfile == "" {
			if err := add(startAgent(dir, bin, agentLeg, mode, upstreamURL)); err != nil {
				return legs, "", err
			}
			if o.baseBin == "" {
				continue
			}
			if err := add(startAgent(dir, o.baseBin, baseLeg, mode, upstreamURL)); err != nil {
				return legs, "", err
			}
			continue
		}
		l, err := startInProcess(dir, mode, upstreamURL)
		if err != nil {
			return legs, "", err
		}
		l.profile = i == 0
		legs = append(legs, l)
	}
	return legs, nodeVersion, nil
}

// measureRound measures l in round i, profiling it when asked.
func measureRound(ctx context.Context, l *leg, o options, i int, up *upstream) (measurement, error) {
	if l.profile && i == 0 {
		stop, err := startProfile(o.cpuProfile)
		if err != nil {
			return measurement{}, err
		}
		defer stop()
	}
	return measure(ctx, l, o.load, 0, up)
}

// measure loads l for d (l's duration when zero). It fails on any non-2xx
// answer, or when the server did not call the upstream for each request
// answered; socket errors (wrk's -timeout, most likely) are counted and
// printed, not fatal, since they are what an overloaded server shows.
func measure(ctx context.Context, l *leg, ld load, d time.Duration, up *upstream) (measurement, error) {
	cpu0, calls0 := cpuTime(l.pid()), up.calls.Load()
	r, err := runWrk(ctx, l.url, ld, d)
	if err != nil {
		return measurement{}, fmt.Errorf("%s: %w", l.name, err)
	}
	m := measurement{wrkResult: r}
	if r.requests > 0 {
		m.cpu = (cpuTime(l.pid()) - cpu0) / time.Duration(r.requests)
	}
	m.rss, _ = memory(l.pid())
	if r.non2xx > 0 {
		return m, fmt.Errorf("%s: %d non-2xx answers under load (must be 0):\n%s\nserver log:\n%s",
			l.name, r.non2xx, r.rawOutput, l.logTail())
	}
	if calls := up.calls.Load() - calls0; float64(calls) < 0.98*float64(r.requests) {
		return m, fmt.Errorf("%s: %d answers for %d upstream calls: it answers without calling the upstream", l.name, r.requests, calls)
	}
	return m, nil
}

func printHeader(o options, nodeVersion string) {
	fmt.Printf("I/O-bound webhook benchmark: wrk -t%d -c%d -d%s --timeout %s POST; each request → GET upstream (answers after %s, ~1 KiB JSON) → {\"price\": %v}; %d rounds, %d cores\n",
		o.threads, o.conns, o.duration, o.timeout, upstreamDelay, wantPrice, o.rounds, runtime.NumCPU())
	fmt.Println("  go handler: net/http, one shared http.Client (keep-alive, MaxIdleConnsPerHost 256), JSON decoded into a struct")
	if nodeVersion != "" {
		fmt.Printf("  node http: Node.js %s, one process (single-threaded), http.createServer + built-in fetch, global dispatcher as it comes (undici: keep-alive, no per-origin connection cap)\n", nodeVersion)
	}
	fmt.Println("  opsrunner: `opsrunner serve` (default config: workers = cores, max_inflight 1000), script awaits fetch, every run recorded")
	fmt.Println("  cpu/req and rss are the server process's own; the upstream and wrk run apart")
}

// nameWidth is the width of the longest leg name, to align the rounds.
func nameWidth(legs []*leg) int {
	w := 0
	for _, l := range legs {
		w = max(w, len(l.name))
	}
	return w
}

func printRound(i int, l *leg, width int) {
	m := l.rounds[i]
	fmt.Printf("  round %d %-*s: %7.0f req/s  p50 %-8s p99 %-8s non-2xx %d  socket errors %d  cpu %-12s rss %s\n",
		i+1, width, l.name, m.rps, m.p50, m.p99, m.non2xx, m.sockErrs, m.cpu.Round(time.Microsecond).String()+"/req", mib(m.rss))
	if m.sockErrs > 0 {
		fmt.Printf("    WARNING %s: %s", l.name, reSockErrs.Find(m.rawOutput))
		fmt.Println(" (a timeout is a request unanswered within -timeout, left out of the latencies)")
	}
}

// Leg name prefixes of the agent under test and of the -base-agent build.
const (
	agentLeg = "opsrunner"
	baseLeg  = "base opsrunner"
)

// printSummary prints each agent leg's ratios to each baseline, to the
// -base-agent leg of its mode if any, and every leg's peak RSS.
func printSummary(legs []*leg) {
	var baselines, agents []*leg
	olds := map[string]*leg{}
	for _, l := range legs {
		switch {
		case strings.HasPrefix(l.name, agentLeg):
			agents = append(agents, l)
		case strings.HasPrefix(l.name, baseLeg):
			olds[strings.TrimPrefix(l.name, baseLeg)] = l
		default:
			baselines = append(baselines, l)
		}
	}
	for _, a := range agents {
		if old := olds[strings.TrimPrefix(a.name, agentLeg)]; old != nil {
			printRatios(a, old, 0)
		}
	}
	for _, a := range agents {
		for _, b := range baselines {
			printRatios(a, b, targetRatio[b.name])
		}
	}
	var peaks []string
	for _, l := range legs {
		_, hwm := memory(l.pid())
		peaks = append(peaks, fmt.Sprintf("%s %s", l.name, mib(hwm)))
	}
	fmt.Printf("  peak RSS (VmHWM): %s\n", strings.Join(peaks, ", "))
}

// printRatios prints the medians and spreads of a's req/s, p99 and CPU
// per request over b's, round by round, and whether the req/s ratio meets
// target (none when zero).
func printRatios(a, b *leg, target float64) {
	var rps, p99, cpu []float64
	for i := range a.rounds {
		rps = append(rps, a.rounds[i].rps/b.rounds[i].rps)
		p99 = append(p99, float64(a.rounds[i].p99)/float64(b.rounds[i].p99))
		cpu = append(cpu, float64(a.rounds[i].cpu)/float64(b.rounds[i].cpu))
	}
	verdict := ""
	if target > 0 {
		verdict = fmt.Sprintf("; target ≥ %.2f met", target)
		if median(rps) < target {
			verdict = fmt.Sprintf("; target ≥ %.2f NOT met", target)
		}
	}
	fmt.Printf("  %s / %s: req/s ratio median %.2f (%.2f–%.2f%s), p99 ratio median %.2f (%.2f–%.2f), cpu/req ratio median %.2f (%.2f–%.2f)\n",
		a.name, b.name, median(rps), slices.Min(rps), slices.Max(rps), verdict, median(p99), slices.Min(p99), slices.Max(p99),
		median(cpu), slices.Min(cpu), slices.Max(cpu))
}

// targetRatio is issue 21's target for opsrunner's throughput over each
// baseline's.
var targetRatio = map[string]float64{"go handler": 0.70, "node http": 1.00}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
