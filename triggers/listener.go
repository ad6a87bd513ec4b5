package triggers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-stomp/stomp/v3/frame"
	"github.com/oklog/ulid/v2"

	"github.com/opsrunner/opsrunner/cluster"
	"github.com/opsrunner/opsrunner/internal/brokercaps"
	"github.com/opsrunner/opsrunner/internal/stompc"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// claimMargin is added to the ack timeout for the claim lease TTL.
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

	cancel context.CancelFunc
	done   chan struct{}

	inFlight atomic.Int64
	counts   [6]atomic.Int64 // by outcomeIndex

	mu    sync.Mutex
	state string
	kind  string
}

var outcomes = []string{store.OutcomeCommitted, store.OutcomeRolledBack, store.OutcomeDeadLettered,
	store.OutcomeSkippedDuplicate, store.OutcomeRefused}

func (l *listener) count(outcome string) {
	for i, o := range outcomes {
		if o == outcome {
			l.counts[i].Add(1)
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
		err := l.session(sctx, idx)
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

// session is one connection with its subscription(s). It returns nil when
// ctx ends (after the in-flight delivery settles), an error when the
// connection fails. Disconnecting gives unacknowledged messages back.
func (l *listener) session(ctx context.Context, idx int) error {
	l.setState("connecting")
	var extra map[string]string
	if l.pol.durable {
		// Sent to every broker kind: harmless where it is not needed.
		extra = brokercaps.For(brokercaps.ActiveMQ).DurableConnectHeaders(l.clientID())
	}
	conn, err := dialConsumer(ctx, l.cc, extra)
	if err != nil {
		return err
	}
	healthy := true
	defer func() {
		if healthy {
			_ = conn.Disconnect()
		} else {
			_ = conn.Close()
		}
	}()
	defer conn.StopOn(ctx)()
	kind := brokercaps.Detect(conn.Server())
	caps := brokercaps.For(kind)
	l.mu.Lock()
	l.kind = kind
	l.mu.Unlock()

	opts := []func(*frame.Frame) error{caps.PrefetchOption(l.pol.prefetch)}
	retryOpts := opts
	if sel := l.spec.Listener.Selector; sel != "" {
		if !caps.Selectors {
			return fmt.Errorf("broker %s of connection %s does not support selectors", kind, l.cc.Name)
		}
		opts = append(opts, withHeaders(map[string]string{"selector": sel}))
	}
	if l.pol.durable {
		opts = append(opts, caps.DurableSubscribeOptions(l.pol.subscriber, l.clientID())...)
	}
	if err := conn.Subscribe(l.spec.Listener.Destination, opts...); err != nil {
		healthy = false
		return err
	}
	if l.pol.topic {
		if err := conn.Subscribe(l.pol.retryDest, retryOpts...); err != nil {
			healthy = false
			return err
		}
	}
	l.setState("listening")
	for {
		msg, err := conn.Next()
		if errors.Is(err, stompc.ErrStopped) || ctx.Err() != nil {
			return nil // stopping wins over a message already read
		}
		if err != nil {
			healthy = false
			return fmt.Errorf("receive: %w", err)
		}
		if err := l.m.cfg.Slots.Acquire(ctx); err != nil {
			return nil // stopping: the message goes back with the disconnect
		}
		l.inFlight.Add(1)
		err = l.handle(ctx, conn, msg)
		l.inFlight.Add(-1)
		if err != nil {
			healthy = false
			return err
		}
	}
}

// clientID names this agent's durable subscriber connection for the listener.
func (l *listener) clientID() string {
	return sanitize(l.m.cfg.Agent) + "." + sanitize(l.spec.ID)
}

// released wraps Slots.Release so it runs at most once per delivery.
type released struct {
	once  sync.Once
	slots *Slots
}

func (r *released) release() { r.once.Do(r.slots.Release) }

// handle runs the lifecycle of one message. stopCtx ends when the listener
// stops: it only cuts a backoff wait short (the message then goes back with
// the disconnect); the run itself is bounded by its ack timeout. It returns
// an error only when the connection is unusable.
func (l *listener) handle(stopCtx context.Context, conn *stompc.Conn, raw *stompc.Message) error {
	slot := &released{slots: l.m.cfg.Slots}
	defer slot.release()
	cfg := &l.m.cfg
	hdr := HeadersOf(raw.Header)
	origID := hdr.Get(HeaderMessageID)
	if origID == "" {
		origID = hdr.Get("message-id")
	}
	attempt := 1
	if v := hdr.Get(HeaderAttempt); v != "" { // a failed parse allocates its error
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			attempt = n
		}
	}
	// A broker redelivers what a consumer held when it went away: an agent
	// that crashed or lost its connection mid-run, but also a consumer that
	// stopped with messages prefetched and never started. So the broker's
	// own counts are not used: a redelivered message counts one more
	// attempt, and once it is claimed (started) the store counts its
	// starts, so that a message that keeps crashing agents is dead-lettered
	// in the end (below).
	base := attempt
	redelivered := hdr.Get("redelivered") == "true"
	if redelivered {
		attempt++
	}
	dest := l.spec.Listener.Destination
	key := origID
	if dh := l.spec.Listener.DedupHeader; dh != "" {
		if v := hdr.Get(dh); v != "" {
			key = v
		}
	}
	if l.pol.topic && l.spec.Listener.Fanout == scripts.FanoutEach {
		key = cfg.Agent + ":" + key // every agent runs its own copy
	}
	lockKey := "delivery:" + l.spec.ID + ":" + key
	markerKey := "processed:" + l.spec.ID + ":" + key

	ackTimeout := l.pol.ackTimeout
	if v := strings.TrimSpace(hdr.Get(HeaderAckTimeout)); v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 {
			ackTimeout = time.Duration(s * float64(time.Second))
		}
	}
	d := &stompDelivery{
		msg:    Message{ID: origID, Destination: dest, Headers: hdr, Body: raw.Body, Attempt: attempt},
		origID: origID,
		raw:    raw,
		conn:   conn,
		auto:   l.pol.ackMode == scripts.AckAuto,
	}
	if cfg.BeforeCommit != nil {
		d.beforeCommit = func(ctx context.Context) error { return cfg.BeforeCommit(ctx, l.spec, d) }
	}
	d.onCommit = func(ctx context.Context) {
		if err := cfg.Coordinator.MarkProcessed(context.WithoutCancel(ctx), markerKey, cfg.ProcessedRetention); err != nil {
			l.log.Error("write processed marker", "listener", l.spec.ID, "message", origID, "err", err)
		}
	}
	settled := func(outcome string, err error) {
		l.count(outcome)
		if cfg.OnSettled != nil {
			cfg.OnSettled(l.spec, d, Settlement{Outcome: outcome, Err: err, Attempt: attempt, MessageID: origID})
		}
	}
	bg := context.WithoutCancel(stopCtx)

	if d.auto {
		if err := conn.Ack(raw); err != nil {
			return fmt.Errorf("ack on receipt: %w", err)
		}
		d.state = stateCommitted
	}

	// 1. dedup
	if done, err := cfg.Coordinator.Processed(bg, markerKey); err != nil {
		l.log.Warn("read processed marker", "listener", l.spec.ID, "err", err)
	} else if done {
		if !d.auto {
			if err := conn.Ack(raw); err != nil {
				return fmt.Errorf("ack duplicate: %w", err)
			}
		}
		settled(store.OutcomeSkippedDuplicate, nil)
		return nil
	}

	// 2. claim; for a topic copy that runs once in the cluster, the least
	// loaded agent claims first: the others hold back in proportion to load.
	if l.pol.topic && l.spec.Listener.Fanout != scripts.FanoutEach {
		l.holdBackByLoad(stopCtx)
	}
	lease, dup, err := l.claim(stopCtx, lockKey, markerKey, ackTimeout)
	switch {
	case dup:
		if !d.auto {
			if err := conn.Ack(raw); err != nil {
				return fmt.Errorf("ack duplicate: %w", err)
			}
		}
		settled(store.OutcomeSkippedDuplicate, nil)
		return nil
	case err != nil:
		if d.auto {
			settled(store.OutcomeCommitted, err)
			return nil
		}
		// Held elsewhere or the coordinator failed: give it back unchanged.
		slot.release()
		return l.giveBack(stopCtx, d, hdr, attempt, attempt)
	}
	defer lease.Release(bg)
	d.lease = lease
	// The holder before us may have committed between our marker check and
	// our claim: look again now that nobody else can.
	if done, err := cfg.Coordinator.Processed(bg, markerKey); err == nil && done {
		if !d.auto {
			if err := conn.Ack(raw); err != nil {
				return fmt.Errorf("ack duplicate: %w", err)
			}
		}
		settled(store.OutcomeSkippedDuplicate, nil)
		return nil
	}

	if redelivered && cfg.Store != nil {
		n, err := cfg.Store.Increment(bg, "starts:"+l.spec.ID+":"+key+":"+strconv.Itoa(base), cfg.ProcessedRetention)
		if err != nil {
			l.log.Warn("count redelivery", "listener", l.spec.ID, "message", origID, "err", err)
		} else {
			attempt = base + int(n)
			d.msg.Attempt = attempt
		}
	}
	// A message the broker gave back, started more often than the
	// redelivery policy allows, was never settled by its runs: dead-letter
	// it without running. (opsrunner's own retry copies never get here: the
	// copy past the policy is the dead-lettered one.)
	if redelivered && !d.auto && l.deadLetterDue(attempt-1) {
		cause := fmt.Errorf("%w (delivery %d)", ErrUnsettled, attempt)
		if err := l.deadLetter(d, hdr, attempt-1, cause); err != nil {
			return err
		}
		settled(store.OutcomeDeadLettered, cause)
		return nil
	}

	// 3. filter and chains, bounded by the ack timeout
	d.deadline = time.Now().Add(ackTimeout)
	runCtx, cancel := context.WithDeadline(bg, d.deadline)
	defer cancel()
	defer lease.AfterLost(cancel)()
	refused := false
	runErr := l.runChains(runCtx, d, &refused)

	state, cause := d.outcome()
	switch {
	case d.auto:
		settled(store.OutcomeCommitted, runErr)
		return nil
	case state == statePending && runCtx.Err() == context.DeadlineExceeded:
		d.expire()
	case state == statePending && runErr != nil:
		_ = d.Rollback(bg, runErr)
	case state == statePending && l.pol.ackMode == scripts.AckExplicit:
		_ = d.Rollback(bg, ErrNoAcknowledgment)
	case state == statePending:
		if err := d.Commit(bg); err != nil {
			l.log.Warn("commit failed", "listener", l.spec.ID, "message", origID, "err", err)
		}
	}
	state, cause = d.outcome()
	if state == stateCommitted {
		settled(store.OutcomeCommitted, runErr)
		return nil
	}
	lease.Release(bg)
	slot.release()
	if l.deadLetterDue(attempt) {
		if err := l.deadLetter(d, hdr, attempt, cause); err != nil {
			return err
		}
		settled(store.OutcomeDeadLettered, cause)
		return nil
	}
	// The outcome is decided: say so before the backoff, or the run history
	// would show a run that already failed as running for up to maxDelay.
	// Whatever happens during the wait, the message is given back: by its
	// republished copy, or by the broker when the connection goes.
	if refused {
		settled(store.OutcomeRefused, cause)
	} else {
		settled(store.OutcomeRolledBack, cause)
	}
	return l.giveBack(stopCtx, d, hdr, attempt, attempt+1)
}

// runChains runs the filter and the chains on the calling goroutine (a
// long-lived one: a fresh goroutine per message paid for growing its stack
// under goja on every delivery). When the deadline passes first, the
// runner is interrupted through ctx and waited for; whatever it does then
// cannot commit (the delivery checks its deadline itself), and the caller
// settles it as timed out.
func (l *listener) runChains(ctx context.Context, d *stompDelivery, refused *bool) (err error) {
	cfg := &l.m.cfg
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("chain runner panicked: %v", r)
		}
	}()
	if cfg.Filter != nil {
		ok, err := cfg.Filter(ctx, l.spec, d)
		if err != nil {
			return fmt.Errorf("filter: %w", err)
		}
		if !ok {
			*refused = true
			_ = d.Rollback(ctx, ErrRefused)
			return ErrRefused
		}
	}
	if cfg.Run == nil {
		return nil
	}
	return cfg.Run(ctx, l.spec, d)
}

// ErrUnsettled is the cause of dead-lettering a message whose runs were
// started more often than the redelivery policy allows, every earlier one
// having ended without a commit or rollback (its agent crashed or lost its
// connection).
var ErrUnsettled = errors.New("redelivered by the broker too often without being settled: an agent crashed or lost its connection while running it")

// claim takes the per-message lock. When another agent holds it, it waits
// for the holder's outcome: a processed marker (dup=true) or the lock freed.
// A queue message waits briefly and is then given back; a topic copy waits
// up to the ack timeout.
func (l *listener) claim(ctx context.Context, lockKey, markerKey string, ackTimeout time.Duration) (cluster.Lease, bool, error) {
	coord := l.m.cfg.Coordinator
	wait := 2 * time.Second
	if l.pol.topic {
		wait = ackTimeout + claimMargin
	}
	deadline := time.Now().Add(wait)
	for {
		lease, err := coord.Acquire(ctx, lockKey, ackTimeout+claimMargin)
		if err == nil {
			return lease, false, nil
		}
		if !errors.Is(err, cluster.ErrHeld) {
			return nil, false, fmt.Errorf("claim message: %w", err)
		}
		if time.Now().After(deadline) {
			return nil, false, fmt.Errorf("claim message: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, false, fmt.Errorf("claim message: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if done, err := coord.Processed(ctx, markerKey); err == nil && done {
			return nil, true, nil
		}
	}
}

// claimHoldBack is how long a fully loaded agent waits before claiming a
// topic copy, leaving it to less loaded agents.
const claimHoldBack = 250 * time.Millisecond

func (l *listener) holdBackByLoad(ctx context.Context) {
	s := l.m.cfg.Slots
	if s == nil || s.Capacity() <= 1 {
		return
	}
	others := s.InFlight() - 1 // this delivery holds a slot already
	if others <= 0 {
		return
	}
	d := time.Duration(float64(claimHoldBack) * float64(others) / float64(s.Capacity()-1))
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// giveBack ends a rolled-back delivery not due for dead-lettering (see
// deadLetterDue): after the backoff it republishes a copy carrying attempt
// next and ACKs the original in one transaction. While it waits the message
// stays locked by this consumer; if stopCtx ends first it returns and the
// disconnect gives the message back.
func (l *listener) giveBack(stopCtx context.Context, d *stompDelivery, hdr Headers, attempt, next int) error {
	delay := l.pol.backoff(attempt)
	if next == attempt {
		delay = l.pol.initialDelay
	}
	select {
	case <-stopCtx.Done():
		return nil
	case <-time.After(delay):
	}
	h := copyHeaders(hdr.All(), nil)
	h[HeaderAttempt] = strconv.Itoa(next)
	h[HeaderMessageID] = d.origID
	h[HeaderOriginalDestination] = l.spec.Listener.Destination
	h["persistent"] = "true"
	if err := transact(d.conn, d.raw, pendingSend{destination: l.pol.retryDest, body: d.raw.Body, headers: h}); err != nil {
		return fmt.Errorf("redeliver message %s: %w", d.origID, err)
	}
	return nil
}

// deadLetterDue reports whether a message whose attempt failed has used up
// the redelivery policy: then it is dead-lettered instead of given back.
func (l *listener) deadLetterDue(attempt int) bool {
	return l.pol.maxRedeliver >= 0 && attempt > l.pol.maxRedeliver
}

// deadLetter publishes the dead-lettered copy and ACKs in one transaction,
// then records the dead letter in the store.
func (l *listener) deadLetter(d *stompDelivery, hdr Headers, attempt int, cause error) error {
	cfg := &l.m.cfg
	now := time.Now().UTC()
	errText := "rolled back"
	if cause != nil {
		errText = cause.Error()
	}
	user := copyHeaders(hdr.All(), causeHeaders)
	h := maps.Clone(user)
	h[HeaderError] = errText
	h[HeaderAttempts] = strconv.Itoa(attempt)
	h[HeaderOriginalDestination] = l.spec.Listener.Destination
	h[HeaderOriginalMessageID] = d.origID
	h[HeaderAgent] = cfg.Agent
	h[HeaderFailedAt] = now.Format(time.RFC3339Nano)
	h["persistent"] = "true"
	if err := transact(d.conn, d.raw, pendingSend{destination: l.pol.deadLetter, body: d.raw.Body, headers: h}); err != nil {
		return fmt.Errorf("dead-letter message %s: %w", d.origID, err)
	}
	if cfg.Store != nil {
		rec := store.DeadLetter{
			ID: ulid.Make().String(), Project: l.spec.Project, Listener: l.spec.ID, MessageID: d.origID,
			Destination: l.spec.Listener.Destination, DeadLetterDestination: l.pol.deadLetter,
			Attempts: attempt, Error: errText, FailedAt: now, Body: string(d.raw.Body), Headers: user, Agent: cfg.Agent,
		}
		switch r := l.pol.retention; {
		case r > 0:
			rec.ExpiresAt = now.Add(time.Duration(r) * time.Minute)
		case r == 0:
			rec.ExpiresAt = now.Add(7 * 24 * time.Hour)
		}
		if err := cfg.Store.PutDeadLetter(context.Background(), rec); err != nil {
			l.log.Error("record dead letter", "listener", l.spec.ID, "message", d.origID, "err", err)
		}
	}
	return nil
}

// transact sends s and ACKs raw in one STOMP transaction confirmed by a receipt.
func transact(conn *stompc.Conn, raw *stompc.Message, s pendingSend) error {
	tx, err := conn.Begin()
	if err != nil {
		return err
	}
	if err := tx.Send(s.destination, s.body, sendOpts(s.headers)); err != nil {
		_ = tx.Abort()
		return fmt.Errorf("send to %s: %w", s.destination, err)
	}
	if err := tx.Ack(raw); err != nil {
		_ = tx.Abort()
		return fmt.Errorf("ack: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}
