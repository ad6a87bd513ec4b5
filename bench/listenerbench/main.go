// Command listenerbench measures how fast one opsrunner agent drains a queue
// through a listener (queue → trivial JS operation → commit, ackMode
// onSuccess, run history on) against a bare go-stomp client-individual
// consumer doing the same work in Go (parse the JSON body, build the answer,
// ACK), with the same consumer count and prefetch, on the same broker
// process in the same run. Each leg pre-loads N persistent messages on a
// fresh queue, then drains it; the program prints messages per second for
// both and the ratio agent/bare (target ≥ 0.85). Brokers are started by
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
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/internal/brokercaps"
	"github.com/opsrunner/opsrunner/internal/testenv"
	"github.com/opsrunner/opsrunner/scripts"
)

const script = "function handle(event) { return {ok: event.body.id}; }\n"

// settings are the knobs shared by both legs.
type settings struct {
	consumers, prefetch int
	cpuProfile          string // written for the agent leg when set ("<path>.<broker>")
	txLeg               bool   // also measure the bare consumer with transacted ACKs
}

type result struct {
	kind               string
	n                  int
	bare, bareTx, agnt float64 // messages per second
	bareCPU, agentCPU  float64 // this process's CPU µs per message (the broker is another process)
	err                error
}

func main() {
	nEmbedded := flag.Int("n-embedded", 5000, "messages per leg on the embedded broker")
	nActiveMQ := flag.Int("n-activemq", 2000, "messages per leg on ActiveMQ")
	consumers := flag.Int("consumers", 2, "consumers on both sides")
	prefetch := flag.Int("prefetch", 1, "prefetch on both sides")
	kinds := flag.String("brokers", "embedded,activemq", "brokers to measure, comma-separated (embedded, activemq)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of each agent leg to FILE.<broker>")
	txLeg := flag.Bool("tx", false, "also measure a bare consumer that ACKs in a transaction committed with a receipt (what the agent does when a run sent messages)")
	flag.Parse()
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400) // as `opsrunner serve` does
	}
	s := settings{consumers: *consumers, prefetch: *prefetch, cpuProfile: *cpuProfile, txLeg: *txLeg}

	var results []result
	for _, kind := range strings.Split(*kinds, ",") {
		r := result{kind: kind}
		var start func() (*testenv.Broker, error)
		switch kind {
		case testenv.KindEmbedded:
			start, r.n = testenv.StartEmbedded, *nEmbedded
		case testenv.KindActiveMQ:
			start, r.n = testenv.StartActiveMQ, *nActiveMQ
		default:
			fmt.Fprintf(os.Stderr, "listenerbench: unknown broker %q\n", kind)
			testenv.StopAll()
			os.Exit(2)
		}
		b, err := start()
		if err == nil {
			err = measure(b, &r, s)
			b.Stop()
		}
		r.err = err
		results = append(results, r)
	}
	testenv.StopAll()

	fmt.Printf("listenerbench: persistent JSON messages, consumers %d, prefetch %d, client-individual ack; agent: trivial JS, ackMode onSuccess, run history on\n", s.consumers, s.prefetch)
	fmt.Printf("%-10s %7s %12s %12s %11s %15s %15s", "broker", "msgs", "bare msg/s", "agent msg/s", "agent/bare", "bare CPU µs/msg", "agent CPU µs/msg")
	if s.txLeg {
		fmt.Printf(" %14s", "bare-tx msg/s")
	}
	fmt.Println()
	failed := false
	for _, r := range results {
		if r.err != nil {
			failed = true
			fmt.Printf("%-10s error: %v\n", r.kind, r.err)
			continue
		}
		fmt.Printf("%-10s %7d %12.0f %12.0f %10.2fx %15.0f %15.0f", r.kind, r.n, r.bare, r.agnt, r.agnt/r.bare, r.bareCPU, r.agentCPU)
		if s.txLeg {
			fmt.Printf(" %14.0f", r.bareTx)
		}
		fmt.Println()
	}
	fmt.Println("target: agent/bare ≥ 0.85")
	if failed {
		os.Exit(1)
	}
}

// measure runs the bare legs, then the agent leg, each on a fresh queue of
// r's broker, and fills r's figures.
func measure(b *testenv.Broker, r *result, s settings) error {
	stamp := time.Now().UnixNano()
	for _, leg := range []struct {
		name     string
		skip     bool
		run      func(queue string) (float64, error)
		out, cpu *float64
	}{
		{"bare", false, func(q string) (float64, error) { return drainBare(b, q, r.n, s, false) }, &r.bare, &r.bareCPU},
		{"bare-tx", !s.txLeg, func(q string) (float64, error) { return drainBare(b, q, r.n, s, true) }, &r.bareTx, nil},
		{"agent", false, func(q string) (float64, error) { return drainAgent(b, q, r.n, s) }, &r.agnt, &r.agentCPU},
	} {
		if leg.skip {
			continue
		}
		queue := fmt.Sprintf("/queue/listenerbench.%s.%d", leg.name, stamp)
		if err := preload(b, queue, r.n); err != nil {
			return err
		}
		cpu0 := cpuTime()
		rate, err := leg.run(queue)
		if err != nil {
			return fmt.Errorf("%s leg: %w", leg.name, err)
		}
		*leg.out = rate
		if leg.cpu != nil {
			*leg.cpu = float64((cpuTime() - cpu0).Microseconds()) / float64(r.n)
		}
	}
	return nil
}

// cpuTime is the CPU time (user + system) this process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

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
// With tx, each ACK goes in a transaction committed with a receipt, as the
// agent settles a delivery: the difference between the two bare legs is the
// broker's transaction cost, the rest of the gap to the agent is opsrunner's.
func drainBare(b *testenv.Broker, queue string, n int, s settings, tx bool) (float64, error) {
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
				var body map[string]any
				if err := json.Unmarshal(m.Body, &body); err != nil {
					errs <- fmt.Errorf("parse: %w", err)
					return
				}
				_, _ = json.Marshal(map[string]any{"ok": body["id"]})
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
// messages per second from the deploy until n deliveries have committed.
func drainAgent(b *testenv.Broker, queue string, n int, s settings) (float64, error) {
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
	cfg.BrokerURL = url
	cfg.Connections = map[string]agent.Connection{"default": {URL: url, Host: b.Host}}
	cfg.Workers = max(cfg.Workers, s.consumers)
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

	if s.cpuProfile != "" {
		f, err := os.Create(s.cpuProfile + "." + b.Kind)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return 0, err
		}
		defer pprof.StopCPUProfile()
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
		time.Sleep(25 * time.Millisecond) // reading the metrics costs CPU: not too often
	}
	return float64(n) / time.Since(start).Seconds(), nil
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
