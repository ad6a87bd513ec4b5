package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/internal/testenv"
)

// chaosListenerID is the listener ensureDeployed looks for to tell whether
// an agent has the chaos project live.
const chaosListenerID = "chaos/in"

// plannedFailure starts the error the flaky operation throws.
const plannedFailure = "planned failure"

// takeoverTarget is the issue 20 target for running a killed agent's
// message elsewhere; reported, not asserted (the machine is noisy).
const takeoverTarget = 5 * time.Second

// chaosProject is the project of the chaos phase: project's listener "in"
// plus a listener "pair" on /queue/<prefix>-pair bound to two operations,
// steady and flaky, each sending the effect {id, op} with header chaos-id
// "<id>/<op>" to /queue/<prefix>-pair.effects. steady first busy-waits
// 5–13 ms, and 300 ms for one input in 20, so that kills find pair
// messages in flight; flaky first throws on the first delivery of 30 % of
// the inputs, reproducibly: those whose number ends in 0, 1 or 2.
func chaosProject(prefix string) map[string][]byte {
	files := project("chaos", prefix, false)
	files["opsrunner.yaml"] = []byte("project: chaos\noperations:\n" + effectOperation + `  - name: steady
    script: steady.js
    timeout: 20s
  - name: flaky
    script: flaky.js
    timeout: 20s
listeners:
` + queueListener("in", "/queue/"+prefix+"-in", "effect") +
		queueListener("pair", "/queue/"+prefix+"-pair", "steady, flaky"))
	files["steady.js"] = pairScript(prefix, "steady", `
  var end = Date.now() + (n % 20 === 5 ? 300 : 5 + (n % 5) * 2);
  while (Date.now() < end) {}`)
	files["flaky.js"] = pairScript(prefix, "flaky", fmt.Sprintf(`
  if (event.deliveryCount === 1 && n %% 10 < 3) { throw new Error(%q + " of " + b.id); }`, plannedFailure))
	return files
}

// pairScript is the script of operation op of the pair listener: it runs
// the JavaScript statements first, which may use the input's number n,
// then sends the effect.
func pairScript(prefix, op, first string) []byte {
	return []byte(fmt.Sprintf(`function handle(event, ctx) {
  var b = event.body;
  var n = parseInt(String(b.id).replace(/\D/g, ""), 10) || 0;%s
  SendMessage("/queue/%s-pair.effects", {id: b.id, op: %q}, {persistent: true, headers: {"chaos-id": b.id + "/" + %q}});
}
`, first, prefix, op, op))
}

// chaosResult is what the chaos phase measured.
type chaosResult struct {
	inputs, pairs int     // inputs to the listeners in and pair
	rate          float64 // inputs sent per second, both listeners together
	kills         int
	takeover      takeoverFigures
}

func (r chaosResult) String() string {
	return fmt.Sprintf("chaos %d inputs + %d to two operations paced at %.0f msg/s, %d kills; takeover after kill -9: %s",
		r.inputs, r.pairs, r.rate, r.kills, r.takeover)
}

// storm is the chaos loop: a SIGKILL every ~2.5 s, preferably of an agent
// with a run in progress, the agent restarted 0.5–1.5 s later; Redis
// restarted once a third of the effects arrived, the broker at two thirds.
// run is its only goroutine. events is guarded by mu; the fields after it
// are written by run and read only after halt returned.
type storm struct {
	b        *testenv.Broker
	rs       *testenv.RedisServer
	agents   []*agentProc
	files    map[string][]byte
	progress func() int // effects so far, of n in all
	n        int
	start    time.Time
	stop     chan struct{}
	done     chan struct{}

	mu     sync.Mutex
	events []string

	kills                 []kill
	redisAt               time.Time // Redis back, empty: the run history starts here
	redisDone, brokerDone bool
	err                   error
}

// newStorm prepares a storm on the agents (does not start it); progress
// counts the effects of the listener in, n of them in all.
func newStorm(b *testenv.Broker, rs *testenv.RedisServer, agents []*agentProc, files map[string][]byte, progress func() int, n int) *storm {
	return &storm{b: b, rs: rs, agents: agents, files: files, progress: progress, n: n,
		start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
}

// note adds a line, stamped with the time since the start, to the events.
func (s *storm) note(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, fmt.Sprintf("%6.1fs ", time.Since(s.start).Seconds())+fmt.Sprintf(format, args...))
}

// run is the loop; it returns on halt or on the first failure to restart.
func (s *storm) run() {
	defer close(s.done)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	tick := time.NewTicker(2500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		if s.err = s.step(rng); s.err != nil {
			return
		}
		if err := ensureDeployed(s.agents, "chaos", chaosListenerID, s.files); err != nil {
			s.note("ensure deployed: %v", err)
		}
	}
}

// halt stops the loop and waits for it. Idempotent; call it from the test
// goroutine only.
func (s *storm) halt() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// step is one tick: the Redis or broker restart when due, else a kill.
func (s *storm) step(rng *rand.Rand) error {
	got := s.progress()
	switch {
	case !s.redisDone && got >= s.n/3:
		s.redisDone = true
		return s.restartRedis(got)
	case !s.brokerDone && got >= 2*s.n/3:
		s.brokerDone = true
		s.note("broker restarting (%d effects)", got)
		s.b.Stop()
		if err := s.b.Start(); err != nil {
			return fmt.Errorf("restart broker: %w", err)
		}
		s.note("broker started")
		return nil
	default:
		a := s.victim(rng)
		s.kills = append(s.kills, kill{agent: a.id, at: time.Now()})
		a.kill9()
		s.note("kill -9 %s (%d effects)", a.id, got)
		time.Sleep(time.Duration(500+rng.IntN(1000)) * time.Millisecond)
		if err := a.start(); err != nil {
			return err
		}
		s.note("%s restarted", a.id)
		return nil
	}
}

// victim picks the agent to kill: the one running the newest run in
// progress, looked for during up to a second, so that the kill interrupts
// messages in flight and their takeover can be measured; a random one when
// none is found.
func (s *storm) victim(rng *rand.Rand) *agentProc {
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		if a := s.busyAgent(); a != nil {
			return a
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s.agents[rng.IntN(len(s.agents))]
}

// busyAgent returns the live agent of the newest run in progress of the
// chaos project when that run started less than 2 s ago (older ones may
// be left running by an agent killed before), or nil.
func (s *storm) busyAgent() *agentProc {
	for _, a := range s.agents {
		if !a.running() {
			continue
		}
		var page struct {
			Runs []runView `json:"runs"`
		}
		if err := getJSON(a.url+"/api/v1/runs?project=chaos&status=running&limit=1", &page); err != nil ||
			len(page.Runs) == 0 || time.Since(page.Runs[0].StartedAt) > 2*time.Second {
			return nil
		}
		for _, b := range s.agents {
			if b.id == page.Runs[0].Agent && b.running() {
				return b
			}
		}
		return nil
	}
	return nil
}

// restartRedis stops Redis, which keeps nothing, starts it again and
// stores the project again.
func (s *storm) restartRedis(got int) error {
	s.rs.Stop()
	s.note("redis stopped (%d effects)", got)
	time.Sleep(1500 * time.Millisecond)
	if err := s.rs.Start(); err != nil {
		return fmt.Errorf("restart redis: %w", err)
	}
	s.redisAt = time.Now()
	s.note("redis started")
	for _, a := range s.agents {
		if a.running() {
			if err := deploy(a, "chaos", s.files); err == nil {
				break
			}
		}
	}
	return nil
}

// report logs the events and fails t when the storm failed or did not
// restart both Redis and the broker. Call it after halt.
func (s *storm) report(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	t.Logf("chaos events:\n  %s", strings.Join(s.events, "\n  "))
	s.mu.Unlock()
	if s.err != nil {
		t.Fatal(s.err)
	}
	if !s.redisDone || !s.brokerDone {
		t.Errorf("chaos incomplete: redis restarted %v, broker restarted %v", s.redisDone, s.brokerDone)
	}
}

// chaos sends n good inputs and some poison ones to the listener in, and
// n/5 inputs to the listener pair, while killing agents and restarting
// Redis and the broker; then it checks exactly-once effects, the dead
// letters and the run history, and measures the takeover after each kill.
func chaos(t *testing.T, b *testenv.Broker, rs *testenv.RedisServer, agents []*agentProc, n int, sz sizes) chaosResult {
	t.Helper()
	prefix := "chaos-" + b.Kind
	in, pairIn := "/queue/"+prefix+"-in", "/queue/"+prefix+"-pair"
	files := chaosProject(prefix)
	effects := collect(t, b, "/queue/"+prefix+".effects")
	pairEffects := collect(t, b, pairIn+".effects")
	dlq, pairDLQ := collect(t, b, in+".DLQ"), collect(t, b, pairIn+".DLQ")
	deployAll(t, agents, "chaos", files)

	good, pairs := ids("c", n), ids("p", n/5)
	all, poison := withPoison(good, sz.poison)
	res := chaosResult{inputs: n, pairs: len(pairs), rate: float64(len(all)+len(pairs)) / sz.period.Seconds()}

	// Inputs are paced over the chaos period so that kills, the Redis and
	// the broker restart happen while messages flow; the restarts are
	// triggered by progress, so they happen before the last input is sent.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	sendErr := make(chan error, 2)
	perSecond := func(ids []string) float64 { return float64(len(ids)) / sz.period.Seconds() }
	// Both senders are owned by this function, which waits for them below.
	go func() { sendErr <- send(ctx, b, in, all, poison, perSecond(all)) }()
	go func() { sendErr <- send(ctx, b, pairIn, pairs, nil, perSecond(pairs)) }()
	s := newStorm(b, rs, agents, files, func() int { got, _ := effects.count(); return got }, n)
	go s.run() // owner: this function, halts it below
	defer s.halt()

	// The storm lasts until every input was sent and every effect of the
	// listener in arrived (as long as before the pair listener came); the
	// pair effects may come after it.
	deadline := time.Now().Add(3 * time.Minute)
	last, ok := effects.waitCount(n, time.Until(deadline))
	for range 2 {
		if err := <-sendErr; err != nil {
			t.Errorf("send inputs: %v", err)
		}
	}
	s.halt()
	_, pairOK := pairEffects.waitCount(2*len(pairs), time.Until(deadline))
	s.report(t)
	res.kills = len(s.kills)
	settle(t, agents, files, dlq, sz.poison)
	if !ok || !pairOK {
		got, _ := effects.count()
		pairGot, _ := pairEffects.count()
		t.Errorf("within the time limit: %d of %d effects, %d of %d pair effects", got, n, pairGot, 2*len(pairs))
	}
	waitIdle(t, agents)
	time.Sleep(time.Second) // effects committed at the very end reach the collector

	checkOnce(t, "effects", effects, good)
	checkOnce(t, "pair effects", pairEffects, pairEffectIDs(pairs))
	stored := checkDeadLetters(t, agents[0], dlq, poison)
	if got, _ := pairDLQ.count(); got != 0 {
		t.Errorf("pair dead-letter queue: %d messages, want none (flaky fails only once)", got)
	}
	res.takeover = checkHistory(t, agents[0], s)

	// Nothing left on the input queues once no agent consumes them.
	for _, a := range agents {
		a.kill9()
	}
	for _, q := range []string{in, pairIn} {
		if left, err := leftover(b, q, 2*time.Second); err != nil || left != 0 {
			t.Errorf("input queue %s: %d messages left (err %v)", q, left, err)
		}
	}
	t.Logf("chaos %s: %d inputs + %d poison, %d pair inputs, %d kills, all effects after %s (inputs paced at %.0f msg/s), %d stored dead letters",
		b.Kind, n, len(poison), len(pairs), res.kills, last.Sub(s.start).Round(time.Millisecond), res.rate, stored)
	return res
}

// withPoison returns good with poisonN poison ids spread evenly among
// them, and the set of those ids.
func withPoison(good []string, poisonN int) ([]string, map[string]bool) {
	poison := map[string]bool{}
	all := append([]string(nil), good...)
	for i := range poisonN {
		id := fmt.Sprintf("poison-%d", i)
		poison[id] = true
		pos := (i + 1) * len(all) / (poisonN + 1)
		all = append(all[:pos], append([]string{id}, all[pos:]...)...)
	}
	return all, poison
}

// pairEffectIDs are the chaos-ids of the effects the pair listener's
// operations send for the inputs pairs: "<id>/steady" and "<id>/flaky".
func pairEffectIDs(pairs []string) []string {
	out := make([]string, 0, 2*len(pairs))
	for _, id := range pairs {
		out = append(out, id+"/steady", id+"/flaky")
	}
	return out
}

// settle brings every agent back, with the project live, and waits for the
// poison messages to reach the dead-letter queue.
func settle(t *testing.T, agents []*agentProc, files map[string][]byte, dlq *collector, poisonN int) {
	t.Helper()
	for _, a := range agents {
		if err := a.start(); err != nil {
			t.Fatal(err)
		}
	}
	if err := ensureDeployed(agents, "chaos", chaosListenerID, files); err != nil {
		t.Error(err)
	}
	if _, ok := dlq.waitCount(poisonN, 2*time.Minute); !ok {
		got, _ := dlq.count()
		t.Errorf("dead-letter queue: %d of %d poison messages", got, poisonN)
	}
}

// checkOnce checks that the collector saw every id of want exactly once
// and nothing else.
func checkOnce(t *testing.T, what string, c *collector, want []string) {
	t.Helper()
	copies := c.copies()
	wanted := map[string]bool{}
	var missing, dups, strange []string
	for _, id := range want {
		wanted[id] = true
		switch n := copies[id]; {
		case n == 0:
			missing = append(missing, id)
		case n > 1:
			dups = append(dups, fmt.Sprintf("%s×%d", id, n))
		}
	}
	for id := range copies {
		if !wanted[id] {
			strange = append(strange, id)
		}
	}
	sort.Strings(dups)
	sort.Strings(strange)
	if len(missing)+len(dups)+len(strange) > 0 {
		t.Errorf("%s not exactly once: %d missing %v, %d duplicated %v, %d unexpected %v (agent logs in %s)",
			what, len(missing), head(missing), len(dups), head(dups), len(strange), head(strange), logDir)
	}
}

// checkDeadLetters checks that the dead-letter queue holds exactly the
// poison ids, once each, and that the store's dead letters (those recorded
// since the Redis restart) are poison ids, none twice. It returns how many
// the store holds.
func checkDeadLetters(t *testing.T, a *agentProc, dlq *collector, poison map[string]bool) int {
	t.Helper()
	for id, c := range dlq.copies() {
		if !poison[id] || c != 1 {
			t.Errorf("dead-letter queue holds %s %d times (poison: %v)", id, c, poison[id])
		}
	}
	var dls struct {
		DeadLetters []struct {
			Body string `json:"body"`
		} `json:"deadLetters"`
	}
	if err := getJSON(a.url+"/api/v1/deadletters", &dls); err != nil {
		t.Errorf("list dead letters: %v", err)
	}
	seen := map[string]bool{}
	for _, d := range dls.DeadLetters {
		var v struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal([]byte(d.Body), &v)
		if !poison[v.ID] || seen[v.ID] {
			t.Errorf("unexpected stored dead letter %s", d.Body)
		}
		seen[v.ID] = true
	}
	return len(seen)
}
