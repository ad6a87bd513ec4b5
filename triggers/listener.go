package triggers

import (
	"context"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// claimMargin is how much longer than the holder's ack timeout a topic
// copy waits for the holder's outcome.
const claimMargin = 10 * time.Second

// policy is a listener's effective settings, defaults applied.
type policy struct {
	ackMode      string
	ackTimeout   time.Duration
	consumers    int
	prefetch     int
	maxRedeliver int // -1: never dead-letter
	initialDelay time.Duration
	multiplier   float64
	maxDelay     time.Duration
	deadLetter   string
	retention    int
	retryDest    string // where retry copies go: the queue itself, or a private queue for topics
	topic        bool
	durable      bool
	subscriber   string
	batch        bool
}

func policyFor(agent string, spec ListenerSpec) policy {
	l := spec.Listener
	p := policy{
		ackMode:      l.AckMode,
		ackTimeout:   time.Duration(l.AckTimeout),
		consumers:    l.Consumers,
		prefetch:     l.Prefetch,
		maxRedeliver: l.Redelivery.MaxRedeliveries,
		initialDelay: time.Duration(l.Redelivery.InitialDelay),
		multiplier:   l.Redelivery.Multiplier,
		maxDelay:     time.Duration(l.Redelivery.MaxDelay),
		deadLetter:   l.Redelivery.DeadLetter,
		retention:    l.Redelivery.Retention,
		topic:        strings.HasPrefix(l.Destination, "/topic/"),
		batch:        l.Mode == scripts.ModeBatch,
	}
	if p.ackMode == "" {
		p.ackMode = scripts.AckOnSuccess
	}
	if p.ackTimeout <= 0 {
		p.ackTimeout = scripts.DefaultAckTimeout
	}
	if p.batch && l.CallbackTimeout > 0 && time.Duration(l.CallbackTimeout) < p.ackTimeout {
		p.ackTimeout = time.Duration(l.CallbackTimeout)
	}
	if p.consumers < 1 {
		p.consumers = 1
	}
	if p.prefetch < 1 {
		p.prefetch = 1
	}
	// Validation filled in the backoff's defaults, and an initialDelay of 0
	// means at once. A spec built by hand without them waits 0 s (its zero
	// maxDelay caps every wait); only a multiplier below 1 is corrected.
	if p.multiplier < 1 {
		p.multiplier = scripts.DefaultMultiplier
	}
	name := strings.TrimPrefix(strings.TrimPrefix(l.Destination, "/queue/"), "/topic/")
	if p.deadLetter == "" {
		p.deadLetter = "/queue/" + name + ".DLQ"
	}
	p.retryDest = l.Destination
	if p.topic {
		p.retryDest = "/queue/opsrunner.retry." + sanitize(spec.Project) + "." + sanitize(l.Name)
		if l.Fanout == scripts.FanoutEach {
			// Each agent retries its own copies: another agent would take
			// them for its own (already processed) and skip them.
			p.retryDest += "." + sanitize(agent)
		}
		p.durable = l.Durable
		p.subscriber = l.SubscriberName
		if p.subscriber == "" {
			p.subscriber = "subscr_" + sanitize(agent) + "_" + sanitize(spec.ID)
		}
		if p.durable {
			p.consumers = 1 // one durable subscription per agent
		}
	}
	if p.batch {
		p.consumers, p.prefetch = 1, 1
	}
	return p
}

// backoff is the delay before redelivering attempt n+1 after attempt n failed.
func (p policy) backoff(attempt int) time.Duration {
	d := float64(p.initialDelay) * math.Pow(p.multiplier, float64(attempt-1))
	if d > float64(p.maxDelay) || math.IsInf(d, 0) {
		return p.maxDelay
	}
	return time.Duration(d)
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

// listener runs the consumers of one ListenerSpec until its context ends.
type listener struct {
	m    *Manager
	spec ListenerSpec
	cc   ConnConfig
	pol  policy
	log  *slog.Logger

	cancel  context.CancelFunc
	done    chan struct{}
	handler Handler // the lifecycle chain around the agent's handler

	inFlight atomic.Int64
	counts   outcomeCounts // observes every delivery of the listener

	mu    sync.Mutex
	state string
	kind  string
}

// outcomes are the delivery outcomes in the order of outcomeCounts.
var outcomes = store.Outcomes()

// outcomeCounts counts a listener's settled operations by outcome, in the
// order of outcomes: an Observer of each of its deliveries.
type outcomeCounts [6]atomic.Int64

// Settling does nothing: only what the broker confirmed counts.
func (c *outcomeCounts) Settling(context.Context, Settlement) error { return nil }

// Settled counts a settled delivery's outcomes, one per operation.
func (c *outcomeCounts) Settled(s Settlement) {
	for _, o := range s.Ops {
		for i, name := range outcomes {
			if name == o.Outcome {
				c[i].Add(1)
			}
		}
	}
}

func (l *listener) setState(s string) {
	l.mu.Lock()
	l.state = s
	l.mu.Unlock()
}

// run starts the consumers and waits for them; it returns when ctx ends and
// every in-flight delivery has settled.
func (l *listener) run(ctx context.Context) {
	defer close(l.done)
	var wg sync.WaitGroup
	for i := range l.pol.consumers {
		wg.Go(func() { l.consume(ctx, i) })
	}
	wg.Wait()
	l.setState("stopped")
}

// consume keeps one consumer session alive: connect, subscribe, handle,
// reconnect with backoff on failure, pause while the manager is paused.
func (l *listener) consume(ctx context.Context, idx int) {
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		if !l.m.gate.wait(ctx) {
			return
		}
		sctx, cancel := context.WithCancel(ctx)
		stop := l.m.gate.onPause(cancel)
		started := time.Now()
		err := source{l: l}.Run(sctx, l.handler)
		stop()
		cancel()
		if ctx.Err() != nil {
			return
		}
		if l.m.gate.paused() {
			l.setState("paused")
			continue
		}
		if err == nil {
			continue
		}
		l.setState("error: " + err.Error())
		l.log.Warn("listener session ended", "listener", l.spec.ID, "consumer", idx, "err", err)
		if time.Since(started) > 10*time.Second {
			delay = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}

// clientID names this agent's durable subscriber connection for the listener.
func (l *listener) clientID() string {
	return sanitize(l.m.cfg.Agent) + "." + sanitize(l.spec.ID)
}

// chain is the lifecycle of one message, outermost step first, around h
// (the agent's handler, which runs the due operations). A message goes
// down the chain from the consumer that received it:
//  1. Backoff: a retry copy waits out its backoff;
//  2. Limit: it takes one of the agent's slots;
//  3. Dedup: operations that already committed it are skipped;
//  4. Claim: one agent in the cluster runs it (a short lease, refreshed);
//  5. Redeliver, on the way back: failed operations go to a retry copy;
//  6. DeadLetter, on the way back: ... or, past the policy, a dead letter;
//  7. CountStarts: a message the broker gave back counts one start more;
//  8. Deadline: its runs are bounded by the ack timeout;
//  9. Finish: what h left pending rolls back; all committed commits.
func (l *listener) chain(h Handler) Handler {
	cfg := &l.m.cfg
	m := &markers{coord: cfg.Coordinator, listener: l.spec.ID, retention: cfg.ProcessedRetention, log: l.log}
	dest := l.spec.Listener.Destination
	c := claim{m: m, lease: cfg.ClaimLease, wait: 2 * cfg.ClaimLease, giveBack: returnUnchanged(l.pol, dest)}
	if l.pol.topic && l.spec.Listener.Fanout != scripts.FanoutEach {
		c.wait = l.pol.ackTimeout + claimMargin
		c.holdBack = l.holdBackByLoad
	}
	return Chain(h,
		Backoff(),
		Limit(cfg.Slots),
		Dedup(m),
		Claim(c),
		Redeliver(l.pol, dest),
		DeadLetter(deadLetters{pol: l.pol, spec: l.spec, agent: cfg.Agent, store: cfg.Store, log: l.log}),
		CountStarts(cfg.Store, l.spec.ID, cfg.ProcessedRetention, l.pol, l.log),
		Deadline(l.pol.ackTimeout),
		Finish(),
	)
}

// claimHoldBack is how long a fully loaded agent waits before claiming a
// topic copy, leaving it to less loaded agents.
const claimHoldBack = 250 * time.Millisecond

func (l *listener) holdBackByLoad(ctx context.Context) {
	s, w := l.m.cfg.Slots, l.m.cfg.Workers
	if s == nil || s.Capacity() <= 1 {
		return
	}
	// Other runs: this delivery holds a slot already, and no worker yet.
	load := Load(0, 0, s.InFlight()-1, s.Capacity()-1)
	if w != nil {
		load = Load(w.InFlight(), w.Capacity(), s.InFlight()-1, s.Capacity()-1)
	}
	if load <= 0 {
		return
	}
	d := time.Duration(float64(claimHoldBack) * load)
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// deadLetterDue reports whether a message whose attempt failed has used up
// the redelivery policy: then it is dead-lettered instead of given back.
func (p policy) deadLetterDue(attempt int) bool {
	return p.maxRedeliver >= 0 && attempt > p.maxRedeliver
}
