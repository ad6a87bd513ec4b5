// Command webhookbench measures webhook throughput and latency with wrk:
// an opsrunner webhook whose script parses a JSON body and returns a small
// object (run history on), against a bare echo handler doing the same in Go,
// in the same run. Both are measured in several rounds, alternating which
// goes first (this machine is shared and a single run can swing by a
// third); it prints each round and the medians of the rounds' ratios.
// A third leg, a pooled goja handler with none of opsrunner's guarantees,
// shows the ceiling of running JS per request on the machine at hand.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/internal/baseline"
	"github.com/opsrunner/opsrunner/scripts"
)

func main() {
	duration := flag.Duration("d", 10*time.Second, "wrk duration per target")
	conns := flag.Int("c", 32, "wrk connections")
	threads := flag.Int("t", 2, "wrk threads")
	rounds := flag.Int("rounds", 3, "rounds of both measurements; the ratios reported are their medians")
	withProbe := flag.Bool("probe", true, "also measure a pooled goja handler without opsrunner's guarantees (baseline.GojaHandler), the ceiling of a JS run per request")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of this process during the first opsrunner measurement to `file`")
	flag.Parse()
	agent.TuneGC(0) // as `opsrunner serve` does
	if _, err := exec.LookPath("wrk"); err != nil {
		log.Fatal("wrk not found: install it with `make test-deps` (Debian package wrk)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	bare, err := serve(ctx, baseline.EchoHandler())
	if err != nil {
		log.Fatal(err)
	}
	var probe string
	if *withProbe {
		if probe, err = serve(ctx, baseline.GojaHandler()); err != nil {
			log.Fatal(err)
		}
	}
	hook, stop, err := startAgent(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer stop()

	script, err := writeScript()
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(script)

	// Warm all up, then measure in rounds; odd rounds run them in reverse.
	for _, u := range []string{bare, probe, hook} {
		if u == "" {
			continue
		}
		if _, err := runWrk(u, script, 2*time.Second, *conns, *threads); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("webhook benchmark: wrk -t%d -c%d -d%s, POST JSON → parse → small object, %d rounds\n", *threads, *conns, *duration, *rounds)
	var rpsRatios, p99Ratios, probeRatios []float64
	for i := range *rounds {
		var b, p, o result
		legs := []func() error{
			func() (err error) { b, err = runWrk(bare, script, *duration, *conns, *threads); return err },
			func() (err error) {
				if probe != "" {
					p, err = runWrk(probe, script, *duration, *conns, *threads)
				}
				return err
			},
			func() error {
				stopProfile, err := startProfile(*cpuprofile, i == 0)
				if err != nil {
					return err
				}
				defer stopProfile()
				o, err = runWrk(hook, script, *duration, *conns, *threads)
				return err
			},
		}
		if i%2 == 1 {
			slices.Reverse(legs)
		}
		for _, leg := range legs {
			if err := leg(); err != nil {
				log.Fatal(err)
			}
		}
		rpsRatios = append(rpsRatios, o.rps/b.rps)
		p99Ratios = append(p99Ratios, float64(o.p99)/float64(b.p99))
		fmt.Printf("  round %d bare echo handler : %9.0f req/s  p50 %-9s p99 %-9s errors %d  cpu %s/req\n", i+1, b.rps, b.p50, b.p99, b.errors, b.cpu.Round(100*time.Nanosecond))
		if probe != "" {
			probeRatios = append(probeRatios, p.rps/b.rps)
			fmt.Printf("  round %d pooled goja probe : %9.0f req/s  p50 %-9s p99 %-9s errors %d  cpu %s/req  (ratios %.2f, p99 %.2f)\n", i+1, p.rps, p.p50, p.p99, p.errors, p.cpu.Round(100*time.Nanosecond), p.rps/b.rps, float64(p.p99)/float64(b.p99))
		}
		fmt.Printf("  round %d opsrunner webhook : %9.0f req/s  p50 %-9s p99 %-9s errors %d  cpu %s/req  (ratios %.2f, p99 %.2f)\n", i+1, o.rps, o.p50, o.p99, o.errors, o.cpu.Round(100*time.Nanosecond), o.rps/b.rps, float64(o.p99)/float64(b.p99))
	}
	if probe != "" {
		fmt.Printf("  throughput ratio probe/bare, median     = %.2f (the ceiling of a JS run per request here)\n", median(probeRatios))
	}
	fmt.Printf("  throughput ratio opsrunner/bare, median = %.2f (target ≥ 0.80)\n", median(rpsRatios))
	fmt.Printf("  p99 ratio opsrunner/bare, median        = %.2f (target ≤ 1.50)\n", median(p99Ratios))
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

// startAgent runs an agent with a webhook doing the same work in JS.
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
	files := map[string][]byte{
		"opsrunner.yaml": []byte(baseline.WebhookManifest),
		"hook.js":        []byte(baseline.WebhookScript),
	}
	var buf bytes.Buffer
	if err := scripts.WriteBundle(&buf, files); err != nil {
		stop()
		return "", nil, err
	}
	base := "http://" + a.HTTPAddr()
	req, _ := http.NewRequest(http.MethodPut, base+"/api/v1/projects/bench", &buf)
	req.Header.Set("Content-Type", "application/gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		stop()
		return "", nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		stop()
		return "", nil, fmt.Errorf("deploy: %s", resp.Status)
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
	cpu      time.Duration // this process's CPU time per request (the server's side; wrk runs apart)
}

var (
	reRPS    = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	reP      = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\b`)
	reErrors = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)|Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

func runWrk(url, script string, d time.Duration, conns, threads int) (result, error) {
	cpu0 := baseline.CPUTime()
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
		r.cpu = time.Duration(float64(baseline.CPUTime()-cpu0) / (r.rps * d.Seconds()))
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
