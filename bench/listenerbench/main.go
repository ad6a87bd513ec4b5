// Command listenerbench measures how fast one opsrunner agent drains a queue
// through a listener (queue → trivial JS operation → commit, ackMode
// onSuccess, run history on) against a bare go-stomp client-individual
// consumer doing the same work in Go (parse the JSON body, build the answer,
// ACK), with the same consumer count and prefetch, on the same broker
// process in the same run. Each leg pre-loads N persistent messages on a
// fresh queue, then drains it. The legs run in several rounds, alternating
// which goes first, because this machine is shared and one leg's figure can
// swing by a third between runs; the program prints each round's messages
// per second, CPU and allocations per message for both legs, and the median
// of the rounds' agent/bare ratios (target ≥ 0.85), with the medians of
// the agent's CPU per message (alone, as a ratio to the bare leg's, and its
// excess over the engine leg's), which other load on the machine sways
// less. It measures each consumer count of -consumers (1, a listener's
// default, and 2) and prints
// the broker's CPU per message and how busy the machine was beside this
// process's: with two cores shared by broker and client, the legs with more
// than one consumer are bound by the CPU both spend per message. A third leg, the bare
// consumer running the script in goja with none of opsrunner's guarantees,
// shows the ceiling of a JS run per message on the machine at hand; with
// -engine, a fourth runs it through opsrunner's engine without the
// listener's lifecycle, which splits the gap between. Brokers are started by
// internal/testenv (the embedded broker as its own process, so both legs
// talk to it over TCP) and stopped at exit. Run by `make bench`.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/internal/baseline"
	"github.com/opsrunner/opsrunner/internal/brokercaps"
	"github.com/opsrunner/opsrunner/internal/testenv"
	ortime "github.com/opsrunner/opsrunner/runtime"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
	"github.com/opsrunner/opsrunner/triggers"
)

const script = "function handle(event) { return {ok: event.body.id}; }\n"

// settings are the knobs shared by both legs.
type settings struct {
	consumers, prefetch int
	rounds              int
	cpuProfile          string // written for the first agent, bare and engine legs when set ("<path>.<broker>…")
	memProfile          string // allocations before and after the first agent leg ("<path>.<broker>.base", "<path>.<broker>")
	trace               string // an execution trace of the first agent leg ("<path>.<broker>…")
	txLeg               bool   // also measure the bare consumer with transacted ACKs
	probeLeg            bool   // also measure the bare consumer running the script in goja
	engineLeg           bool   // also measure the bare consumer running the script through opsrunner's engine
	maxRuns             int    // the agent's run_retention.max_runs; 0: its default
}

// leg is one drain of n messages.
type leg struct {
	rate   float64 // messages per second
	cpu    float64 // this process's CPU µs per message (the broker is another process)
	broker float64 // the broker processes' CPU µs per message
	busy   float64 // the machine's busy share of its cores while the leg ran
	allocs float64 // this process's heap allocations per message
}

// round is one measurement of every leg.
type round struct{ bare, bareTx, probe, engine, agent leg }

type result struct {
	kind      string
	consumers int
	n         int
	rounds    []round
	err       error
}

// medianRatio is the median over rounds of the rate of the leg of picks
// over the bare leg's.
func (r result) medianRatio(pick func(round) leg) float64 {
	return r.median(func(rd round) float64 { return pick(rd).rate / rd.bare.rate })
}

// median is the median over rounds of f.
func (r result) median(f func(round) float64) float64 {
	v := make([]float64, len(r.rounds))
	for i, rd := range r.rounds {
		v[i] = f(rd)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// printCPU prints the medians of the agent's CPU per message: less swayed
// by other load on the machine than the rates, and, over the bare leg's
// or the engine leg's in the same round, what the agent adds per message.
func (r result) printCPU(engine bool) {
	fmt.Printf("%-10s %4d median agent CPU µs/msg: %.1f (agent/bare CPU %.2fx)", r.kind, r.consumers,
		r.median(func(rd round) float64 { return rd.agent.cpu }),
		r.median(func(rd round) float64 { return rd.agent.cpu / rd.bare.cpu }))
	if engine {
		fmt.Printf(", over the engine leg's: %.1f µs/msg (the listener's lifecycle and run history)",
			r.median(func(rd round) float64 { return rd.agent.cpu - rd.engine.cpu }))
	}
	fmt.Println()
}

func main() {
	nEmbedded := flag.Int("n-embedded", 50000, "messages per leg on the embedded broker")
	nActiveMQ := flag.Int("n-activemq", 20000, "messages per leg on ActiveMQ")
	consumerList := flag.String("consumers", "1,2", "consumer counts to measure, comma-separated, each on both sides (1 is a listener's default)")
	prefetch := flag.Int("prefetch", 1, "prefetch on both sides")
	rounds := flag.Int("rounds", 5, "rounds of both legs per broker; the ratio reported is their median")
	kinds := flag.String("brokers", "embedded,activemq", "brokers to measure, comma-separated (embedded, activemq)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the first agent leg to FILE.<broker>.c<consumers>, and of the first bare and engine legs to the same name with .bare and .engine")
	memProfile := flag.String("memprofile", "", "write allocation profiles before and after the first agent leg to FILE.<broker>.c<consumers>.base and FILE.<broker>.c<consumers> (compare with pprof -base)")
	traceFile := flag.String("trace", "", "write an execution trace of the first agent leg to FILE.<broker>.c<consumers> (go tool trace; -d=parsed lists each goroutine's blocking and its stack)")
	txLeg := flag.Bool("tx", false, "also measure a bare consumer that ACKs in a transaction committed with a receipt (what the agent does when a run sent messages)")
	probeLeg := flag.Bool("probe", true, "also measure a bare consumer that runs the script in a goja runtime of its own (no run record, time limit or isolation): the ceiling of a JS run per message")
	maxRuns := flag.Int("max-runs", 0, "the agent's run_retention.max_runs (0: its default, 10000). A leg stores n runs: with max-runs at least n, no run is deleted within the leg, as in builds before bounded retention (their minute sweep ran after a leg)")
	engineLeg := flag.Bool("engine", false, "also measure a bare consumer that runs the script through opsrunner's engine (pooled hardened runtimes, time limits, the listener's event) without the listener's lifecycle (dedup, claim, run record, settlement): it splits the agent's gap to the goja probe into the engine's share and the lifecycle's")
	flag.Parse()
	agent.TuneGC(0) // as `opsrunner serve` does
	var counts []int
	for _, c := range strings.Split(*consumerList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "listenerbench: bad consumer count %q\n", c)
			os.Exit(2)
		}
		counts = append(counts, n)
	}
	s := settings{prefetch: *prefetch, rounds: max(*rounds, 1), cpuProfile: *cpuProfile, memProfile: *memProfile, trace: *traceFile, txLeg: *txLeg, probeLeg: *probeLeg, engineLeg: *engineLeg, maxRuns: *maxRuns}

	var results []result
	for _, kind := range strings.Split(*kinds, ",") {
		var (
			start func() (*testenv.Broker, error)
			n     int
		)
		switch kind {
		case testenv.KindEmbedded:
			start, n = testenv.StartEmbedded, *nEmbedded
		case testenv.KindActiveMQ:
			start, n = testenv.StartActiveMQ, *nActiveMQ
		default:
			fmt.Fprintf(os.Stderr, "listenerbench: unknown broker %q\n", kind)
			testenv.StopAll()
			os.Exit(2)
		}
		b, err := start()
		for _, c := range counts {
			r := result{kind: kind, consumers: c, n: n, err: err}
			if err == nil {
				sc := s
				sc.consumers = c
				r.err = measure(b, &r, sc)
			}
			results = append(results, r)
		}
		if err == nil {
			b.Stop()
		}
	}
	testenv.StopAll()

	durability := os.Getenv("OPSRUNNER_RUN_DURABILITY")
	if durability == "" {
		durability = "sync (the default)"
	}
	fmt.Printf("listenerbench: persistent JSON messages, prefetch %d, client-individual ack, the same consumer count on both sides; agent: trivial JS, ackMode onSuccess, run history on, run_durability %s%s\n", s.prefetch, durability, retentionNote(s.maxRuns))
	fmt.Println("CPU µs/msg: this process's (client) and the broker's; busy: the share of the machine's cores in use while the leg ran")
	fmt.Printf("%-10s %4s %5s %7s %11s %11s %10s %17s %17s %13s %13s", "broker", "cons", "round", "msgs", "bare msg/s", "agent msg/s", "agent/bare", "client µs bare/ag", "broker µs bare/ag", "busy bare/ag", "allocs bare/ag")
	if s.txLeg {
		fmt.Printf(" %14s", "bare-tx msg/s")
	}
	if s.probeLeg {
		fmt.Printf(" %12s %11s %12s", "goja msg/s", "goja/bare", "goja µs/msg")
	}
	if s.engineLeg {
		fmt.Printf(" %12s %12s %13s", "engine msg/s", "engine/bare", "engine µs/msg")
	}
	fmt.Println()
	failed := false
	for _, r := range results {
		if r.err != nil {
			failed = true
			fmt.Printf("%-10s error: %v\n", r.kind, r.err)
			continue
		}
		for i, rd := range r.rounds {
			fmt.Printf("%-10s %4d %5d %7d %11.0f %11.0f %9.2fx %17s %17s %13s %13s", r.kind, r.consumers, i+1, r.n,
				rd.bare.rate, rd.agent.rate, rd.agent.rate/rd.bare.rate,
				pair("%.0f", rd.bare.cpu, rd.agent.cpu), pair("%.0f", rd.bare.broker, rd.agent.broker),
				pair("%.0f%%", 100*rd.bare.busy, 100*rd.agent.busy), pair("%.0f", rd.bare.allocs, rd.agent.allocs))
			if s.txLeg {
				fmt.Printf(" %14.0f", rd.bareTx.rate)
			}
			if s.probeLeg {
				fmt.Printf(" %12.0f %10.2fx %12.0f", rd.probe.rate, rd.probe.rate/rd.bare.rate, rd.probe.cpu)
			}
			if s.engineLeg {
				fmt.Printf(" %12.0f %11.2fx %13.0f", rd.engine.rate, rd.engine.rate/rd.bare.rate, rd.engine.cpu)
			}
			fmt.Println()
		}
		fmt.Printf("%-10s %4d median agent/bare over %d rounds: %.2fx\n", r.kind, r.consumers, len(r.rounds), r.medianRatio(func(rd round) leg { return rd.agent }))
		r.printCPU(s.engineLeg)
		if s.probeLeg {
			fmt.Printf("%-10s %4d median goja/bare over %d rounds: %.2fx (the ceiling of a JS run per message here)\n", r.kind, r.consumers, len(r.rounds), r.medianRatio(func(rd round) leg { return rd.probe }))
		}
		if s.engineLeg {
			fmt.Printf("%-10s %4d median engine/bare over %d rounds: %.2fx (opsrunner's engine without the listener's lifecycle)\n", r.kind, r.consumers, len(r.rounds), r.medianRatio(func(rd round) leg { return rd.engine }))
		}
	}
	fmt.Println("target: agent/bare ≥ 0.85 (CPU µs and allocations are this process's, per message)")
	if failed {
		os.Exit(1)
	}
}

// warmupMessages are drained by a bare consumer before the rounds.
const warmupMessages = 10000

// measure warms the broker up, then runs s.rounds rounds of the legs, each
// leg on a fresh queue of r's broker; odd rounds run the agent first, so
// neither leg always gets the machine as the other left it.
func measure(b *testenv.Broker, r *result, s settings) error {
	// Warm the broker up first (ActiveMQ's JVM is up to twice slower over
	// its first ten thousand messages or so): unmeasured, it would count against
	// whichever leg ran first.
	warm := fmt.Sprintf("/queue/listenerbench.warmup.%d", time.Now().UnixNano())
	if err := preload(b, warm, warmupMessages); err != nil {
		return err
	}
	if _, err := drainBare(b, warm, warmupMessages, s, false, goWork); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	for i := range s.rounds {
		var rd round
		type spec struct {
			name string
			skip bool
			run  func(queue string) (float64, error)
			out  *leg
		}
		legs := []spec{
			{"bare", false, func(q string) (float64, error) { return drainBare(b, q, r.n, s, false, goWork) }, &rd.bare},
			{"bare-tx", !s.txLeg, func(q string) (float64, error) { return drainBare(b, q, r.n, s, true, goWork) }, &rd.bareTx},
			{"goja", !s.probeLeg, func(q string) (float64, error) { return drainBare(b, q, r.n, s, false, gojaWork) }, &rd.probe},
			{"engine", !s.engineLeg, func(q string) (float64, error) {
				e, p, err := newEngine()
				if err != nil {
					return 0, err
				}
				defer e.Close()
				return drainBare(b, q, r.n, s, false, engineWork(e, p))
			}, &rd.engine},
			{"agent", false, func(q string) (float64, error) { return drainAgent(b, q, r.n, s, i == 0) }, &rd.agent},
		}
		if i%2 == 1 {
			slices.Reverse(legs)
		}
		stamp := time.Now().UnixNano()
		for _, l := range legs {
			if l.skip {
				continue
			}
			queue := fmt.Sprintf("/queue/listenerbench.%s.%d", l.name, stamp)
			if err := preload(b, queue, r.n); err != nil {
				return err
			}
			runtime.GC()
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			cpu0, broker0 := baseline.CPUTime(), childrenCPU()
			busy0, total0, _ := machineCPU()
			stopProfile := func() {}
			if i == 0 && (l.name == "bare" || l.name == "engine") && s.cpuProfile != "" {
				var err error
				if stopProfile, err = startCPUProfile(s.profilePath(s.cpuProfile, b.Kind) + "." + l.name); err != nil {
					return err
				}
			}
			rate, err := l.run(queue)
			stopProfile()
			if err != nil {
				return fmt.Errorf("round %d, %s leg: %w", i+1, l.name, err)
			}
			cpu, broker := baseline.CPUTime()-cpu0, childrenCPU()-broker0
			busy1, total1, _ := machineCPU()
			runtime.ReadMemStats(&m1)
			*l.out = leg{
				rate:   rate,
				cpu:    float64(cpu.Microseconds()) / float64(r.n),
				broker: broker / float64(r.n),
				allocs: float64(m1.Mallocs-m0.Mallocs) / float64(r.n),
			}
			if total1 > total0 {
				l.out.busy = (busy1 - busy0) / (total1 - total0)
			}
		}
		r.rounds = append(r.rounds, rd)
	}
	return nil
}

// goWork does the script's work in Go: parse the body, build the answer.
func goWork() (func(m *stomp.Message) error, error) {
	return func(m *stomp.Message) error {
		var v map[string]any
		if err := json.Unmarshal(m.Body, &v); err != nil {
			return fmt.Errorf("parse: %w", err)
		}
		_, err := json.Marshal(map[string]any{"ok": v["id"]})
		return err
	}, nil
}

// gojaWork runs the agent's script in a goja runtime of the consumer's own,
// with none of what opsrunner adds (run record, time limit, isolation
// between messages, claim): the event is {body} with the body parsed.
func gojaWork() (func(m *stomp.Message) error, error) {
	g, err := baseline.NewGojaScript("op.js", script)
	if err != nil {
		return nil, err
	}
	return func(m *stomp.Message) error {
		_, err := g.Run("body", string(m.Body), true)
		return err
	}, nil
}

// engineWork runs the agent's script through opsrunner's engine, shared by
// the consumers as an agent's is (pooled hardened runtimes, time limits, the
// listener's event and ack deadline), with none of the listener's lifecycle
// around it: no dedup, claim, run record or settlement.
func engineWork(e *ortime.Engine, p *scripts.Project) func() (func(m *stomp.Message) error, error) {
	return func() (func(m *stomp.Message) error, error) {
		return func(m *stomp.Message) error {
			pairs := make([]string, 0, 2*m.Header.Len())
			for i := range m.Header.Len() {
				k, v := m.Header.GetAt(i)
				pairs = append(pairs, k, v)
			}
			hdr := triggers.HeadersOf(pairs)
			d := &probeDelivery{msg: triggers.Message{ID: hdr.Get("message-id"), Destination: m.Destination, Headers: hdr, Body: m.Body, Attempt: 1}}
			ctx, cancel := context.WithTimeout(context.Background(), scripts.DefaultAckTimeout)
			defer cancel()
			res := e.Run(ctx, ortime.Invocation{RunID: "engine", Project: p, Operation: "handle", Trigger: ortime.TriggerListener,
				Event: triggers.EventFor(d), Message: d})
			return res.Err
		}, nil
	}
}

// newEngine starts an engine with the bench project loaded; Close it after.
func newEngine() (*ortime.Engine, *scripts.Project, error) {
	p, err := scripts.Load("bench", 1, map[string][]byte{
		"opsrunner.yaml": []byte("project: bench\noperations:\n  - name: handle\n    script: handle.js\n    timeout: 10s\n"),
		"handle.js":      []byte(script),
	}, scripts.LoadOptions{})
	if err != nil {
		return nil, nil, err
	}
	return ortime.New(ortime.Config{}), p, nil
}

// probeDelivery is the engine leg's message: it settles nothing (the bare
// consumer ACKs).
type probeDelivery struct{ msg triggers.Message }

func (d *probeDelivery) ID() string                                                    { return d.msg.ID }
func (d *probeDelivery) Message() triggers.Message                                     { return d.msg }
func (d *probeDelivery) Commit(context.Context) error                                  { return nil }
func (d *probeDelivery) Rollback(context.Context, error) error                         { return nil }
func (d *probeDelivery) Send(context.Context, string, []byte, map[string]string) error { return nil }

// preload sends n persistent JSON messages to queue; the last SEND asks for
// a receipt, so the broker has them all when it returns.
func preload(b *testenv.Broker, queue string, n int) error {
	conn, err := b.Dial()
	if err != nil {
		return fmt.Errorf("connect producer: %w", err)
	}
	defer conn.MustDisconnect()
	for i := range n {
		opts := []func(*frame.Frame) error{stomp.SendOpt.Header("persistent", "true")}
		if i == n-1 {
			opts = append(opts, stomp.SendOpt.Receipt)
		}
		body := []byte(`{"id":` + strconv.Itoa(i) + `,"name":"widget"}`)
		if err := conn.Send(queue, "application/json", body, opts...); err != nil {
			return fmt.Errorf("preload %s message %d: %w", queue, i, err)
		}
	}
	return nil
}

// drainBare consumes n messages from queue with s.consumers connections,
// each one subscription with prefetch s.prefetch handling one message at a
// time (as the agent's listener does), and returns messages per second.
// Each consumer handles a message's body with a work function newWork
// makes for it. With tx, each ACK goes in a transaction committed with a receipt, as the
// agent settles a delivery: the difference between the two bare legs is the
// broker's transaction cost, the rest of the gap to the agent is opsrunner's.
func drainBare(b *testenv.Broker, queue string, n int, s settings, tx bool, newWork func() (func(m *stomp.Message) error, error)) (float64, error) {
	caps := brokercaps.For(b.Kind)
	conns := make([]*stomp.Conn, s.consumers)
	for i := range conns {
		c, err := b.Dial()
		if err != nil {
			return 0, fmt.Errorf("connect consumer: %w", err)
		}
		defer c.Disconnect()
		conns[i] = c
	}
	var done atomic.Int64
	finished := make(chan struct{})
	var once sync.Once
	errs := make(chan error, len(conns))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	settle := func(c *stomp.Conn, m *stomp.Message) error {
		if !tx {
			return c.Ack(m)
		}
		t, err := c.BeginWithError()
		if err != nil {
			return err
		}
		if err := t.Ack(m); err != nil {
			return err
		}
		return t.CommitWithReceipt()
	}
	start := time.Now()
	for _, c := range conns {
		work, err := newWork()
		if err != nil {
			return 0, err
		}
		sub, err := c.Subscribe(queue, stomp.AckClientIndividual, caps.PrefetchOption(s.prefetch))
		if err != nil {
			return 0, fmt.Errorf("subscribe: %w", err)
		}
		wg.Go(func() { // owner: drainBare; ends on error or when stop closes
			defer func() { _ = sub.Unsubscribe() }()
			for {
				var m *stomp.Message
				select {
				case <-stop:
					return
				case m = <-sub.C:
				}
				if m == nil || m.Err != nil {
					errs <- fmt.Errorf("receive: %v", m)
					return
				}
				if err := work(m); err != nil {
					errs <- err
					return
				}
				if err := settle(c, m); err != nil {
					errs <- fmt.Errorf("settle: %w", err)
					return
				}
				if done.Add(1) == int64(n) {
					once.Do(func() { close(finished) })
				}
			}
		})
	}
	select {
	case <-finished:
	case err := <-errs:
		return 0, err
	case <-time.After(5 * time.Minute):
		return 0, fmt.Errorf("stalled after %d of %d messages", done.Load(), n)
	}
	// A receipt on every connection: the broker has applied their ACKs.
	for _, c := range conns {
		if err := c.Send(queue+".done", "text/plain", nil, stomp.SendOpt.Receipt); err != nil {
			return 0, fmt.Errorf("final receipt: %w", err)
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// drainAgent starts an agent on b, deploys a listener on queue and returns
// messages per second from the deploy until the last of n deliveries
// finished its run.
func drainAgent(b *testenv.Broker, queue string, n int, s settings, profile bool) (float64, error) {
	dir, err := os.MkdirTemp("", "listenerbench")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	url := "stomp://" + b.Addr
	if b.Login != "" {
		url = fmt.Sprintf("stomp://%s:%s@%s", b.Login, b.Passcode, b.Addr)
	}
	cfg := agent.Defaults()
	cfg.HTTPAddr, cfg.DataDir, cfg.AgentID = "127.0.0.1:0", dir, "listenerbench"
	cfg.RunDurability = os.Getenv("OPSRUNNER_RUN_DURABILITY") // as serve reads it: sync (default) or batched
	cfg.BrokerURL = url
	cfg.Connections = map[string]agent.Connection{"default": {URL: url, Host: b.Host}}
	cfg.Workers = max(cfg.Workers, s.consumers)
	if s.maxRuns > 0 {
		cfg.RunRetention.MaxRuns = s.maxRuns
	}
	a, err := agent.New(cfg, nil)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx) }() // owner: drainAgent; ends when ctx is cancelled
	defer func() { cancel(); <-served }()
	select {
	case <-a.Started():
	case err := <-served:
		return 0, fmt.Errorf("agent stopped: %w", err)
	}

	manifest := fmt.Sprintf(`project: bench
operations:
  - name: handle
    script: handle.js
    timeout: 10s
listeners:
  - name: in
    destination: %s
    ackMode: onSuccess
    ackTimeout: 30s
    consumers: %d
    prefetch: %d
    operations: [handle]
`, queue, s.consumers, s.prefetch)
	var bundle bytes.Buffer
	if err := scripts.WriteBundle(&bundle, map[string][]byte{"opsrunner.yaml": []byte(manifest), "handle.js": []byte(script)}); err != nil {
		return 0, err
	}

	if profile && s.memProfile != "" {
		if err := writeAllocs(s.profilePath(s.memProfile, b.Kind) + ".base"); err != nil {
			return 0, err
		}
		defer func() { _ = writeAllocs(s.profilePath(s.memProfile, b.Kind)) }()
	}
	if profile && s.trace != "" {
		stop, err := startTrace(s.profilePath(s.trace, b.Kind))
		if err != nil {
			return 0, err
		}
		defer stop()
	}
	if profile && s.cpuProfile != "" {
		stop, err := startCPUProfile(s.profilePath(s.cpuProfile, b.Kind))
		if err != nil {
			return 0, err
		}
		defer stop()
	}
	start := time.Now()
	req, _ := http.NewRequest(http.MethodPut, "http://"+a.HTTPAddr()+"/api/v1/projects/bench", &bundle)
	req.Header.Set("Content-Type", "application/gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("deploy: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return 0, fmt.Errorf("deploy: %s", resp.Status)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		got, err := outcomes(a)
		if err != nil {
			return 0, err
		}
		if got["committed"] >= n {
			break
		}
		if other := sum(got) - got["committed"]; other > 0 {
			return 0, fmt.Errorf("deliveries not committed: %v", got)
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("stalled: %v of %d", got, n)
		}
		// Gathering the metrics costs this process CPU, which would count
		// against the agent: poll seldom, and take the end from the runs.
		time.Sleep(100 * time.Millisecond)
	}
	end, err := lastFinished(a)
	if err != nil {
		return 0, err
	}
	return float64(n) / end.Sub(start).Seconds(), nil
}

// lastFinished is when the agent's most recent runs finished (the latest of
// them): the end of the drain, without the polling's granularity.
func lastFinished(a *agent.Agent) (time.Time, error) {
	runs, err := a.Runs(context.Background(), store.RunFilter{Limit: 50})
	if err != nil {
		return time.Time{}, fmt.Errorf("list runs: %w", err)
	}
	var end time.Time
	for _, r := range runs {
		if r.FinishedAt != nil && r.FinishedAt.After(end) {
			end = *r.FinishedAt
		}
	}
	if end.IsZero() {
		return end, errors.New("no finished run recorded")
	}
	return end, nil
}

// writeAllocs writes the allocation profile so far to path.
func writeAllocs(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.GC() // the profile is as of the last GC
	return pprof.Lookup("allocs").WriteTo(f, 0)
}

// outcomes reads the agent's delivery outcome counters from its metrics.
func outcomes(a *agent.Agent) (map[string]int, error) {
	rec := httptest.NewRecorder()
	a.Metrics().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	out := map[string]int{}
	sc := bufio.NewScanner(rec.Body)
	const prefix = `opsrunner_delivery_outcomes_total{outcome="`
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		name, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			return nil, errors.New("unexpected metrics line: " + line)
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		out[name] = int(v)
	}
	return out, sc.Err()
}

func sum(m map[string]int) int {
	t := 0
	for _, v := range m {
		t += v
	}
	return t
}

// startCPUProfile writes a CPU profile to path until the returned func is called.
func startCPUProfile(path string) (stop func(), err error) {
	return startRecording(path, pprof.StartCPUProfile, pprof.StopCPUProfile)
}

// startTrace writes an execution trace to path until the returned func is
// called.
func startTrace(path string) (stop func(), err error) {
	return startRecording(path, trace.Start, trace.Stop)
}

// startRecording creates path and starts a recording (a CPU profile, an
// execution trace) into it; the returned func ends it and closes the file.
func startRecording(path string, start func(io.Writer) error, end func()) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { end(); f.Close() }, nil
}

// pair formats a bare/agent pair of figures.
func pair(verb string, bare, agent float64) string {
	return fmt.Sprintf(verb+"/"+verb, bare, agent)
}

// profilePath is where a profile of the first agent leg goes:
// FILE.<broker>.c<consumers> (the first bare leg's CPU profile adds .bare).
func (s settings) profilePath(file, broker string) string {
	return fmt.Sprintf("%s.%s.c%d", file, broker, s.consumers)
}

// retentionNote names a retention other than the agent's default.
func retentionNote(maxRuns int) string {
	if maxRuns <= 0 {
		return ""
	}
	return fmt.Sprintf(", run_retention.max_runs %d", maxRuns)
}
