package triggers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/go-stomp/stomp/v3/frame"

	"github.com/opsrunner/opsrunner/internal/brokercaps"
	"github.com/opsrunner/opsrunner/internal/stompc"
	"github.com/opsrunner/opsrunner/scripts"
)

// Headers of opsrunner's retry copies besides those of event.go.
const (
	// HeaderOperations names, comma-separated, the operations a retry copy
	// (or dead letter) is still due to: those that did not commit.
	HeaderOperations = "opsrunner-operations"
	// HeaderNotBefore is the earliest instant (RFC 3339) a retry copy may
	// run: its backoff.
	HeaderNotBefore = "opsrunner-not-before"
)

// source is one consumer connection of a listener: it subscribes and hands
// each message, as a Delivery, to the listener's handler chain.
type source struct {
	l *listener
}

// Run is one connection with its subscription(s). It returns nil when ctx
// ends (after the delivery in hand settles), an error when the connection
// fails. Disconnecting gives unacknowledged messages back.
func (s source) Run(ctx context.Context, h Handler) error {
	l := s.l
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
	if err := s.subscribe(conn); err != nil {
		healthy = false
		return err
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
		if err := s.deliver(ctx, h, conn, msg); err != nil {
			healthy = false
			return err
		}
	}
}

// subscribe subscribes to the listener's destination, with its selector
// and durable subscription, and for a topic to its private retry queue.
func (s source) subscribe(conn *stompc.Conn) error {
	l := s.l
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
		return err
	}
	if l.pol.topic {
		return conn.Subscribe(l.pol.retryDest, retryOpts...)
	}
	return nil
}

// deliver hands one message to h. In ackMode auto it is acknowledged
// first. A delivery h leaves unsettled while the listener runs means a
// broken chain: the connection goes, and the broker gives the message back.
func (s source) deliver(ctx context.Context, h Handler, conn *stompc.Conn, raw *stompc.Message) error {
	l := s.l
	d := l.newDelivery(conn, raw)
	d.Observe(ctx, &l.counts)
	if d.auto {
		if err := conn.Ack(raw); err != nil {
			return fmt.Errorf("ack on receipt: %w", err)
		}
	}
	l.inFlight.Add(1)
	err := h(ctx, d)
	l.inFlight.Add(-1)
	if err != nil {
		return err
	}
	if !d.Settled() && ctx.Err() == nil {
		return fmt.Errorf("message %s left unsettled", d.msg.ID)
	}
	return nil
}

// newDelivery reads a MESSAGE frame: its original id (the same across
// opsrunner's copies), the attempt it counts, its dedup key and the
// operations it is due to (all bound ones, or those its copy names).
func (l *listener) newDelivery(conn *stompc.Conn, raw *stompc.Message) *Delivery {
	hdr := HeadersOf(raw.Header)
	id := hdr.Get(HeaderMessageID)
	if id == "" {
		id = hdr.Get("message-id")
	}
	attempt := 1
	if v := hdr.Get(HeaderAttempt); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			attempt = n
		}
	}
	// A broker redelivers what a consumer held when it went away (a crash,
	// a lost connection, a consumer that stopped with messages prefetched):
	// that counts one attempt more (see CountStarts).
	redelivered := hdr.Get("redelivered") == "true"
	if redelivered {
		attempt++
	}
	key := id
	if dh := l.spec.Listener.DedupHeader; dh != "" {
		if v := hdr.Get(dh); v != "" {
			key = v
		}
	}
	if l.pol.topic && l.spec.Listener.Fanout == scripts.FanoutEach {
		key = l.m.cfg.Agent + ":" + key // every agent runs its own copy
	}
	l.mu.Lock()
	stable := brokercaps.For(l.kind).StableMessageID
	l.mu.Unlock()
	var brokerID string
	if stable {
		brokerID = hdr.Get("message-id")
	}
	// The delivery and its acker in one allocation: they live as long.
	da := &struct {
		d Delivery
		a stompAcker
	}{a: stompAcker{conn: conn, raw: raw}}
	da.d.init(DeliveryConfig{
		Message:     Message{ID: id, Destination: l.spec.Listener.Destination, Headers: hdr, Body: raw.Body, Attempt: attempt},
		Key:         key,
		BrokerID:    brokerID,
		Operations:  dueOperations(l.spec.Listener.Operations, hdr.Get(HeaderOperations)),
		Redelivered: redelivered,
		AckMode:     l.pol.ackMode,
		Acker:       &da.a,
	})
	return &da.d
}

// dueOperations are the bound operations a message is due to: all of
// them, or those a retry copy names.
func dueOperations(bound []string, named string) []string {
	if strings.TrimSpace(named) == "" {
		return bound
	}
	names := strings.Split(named, ",")
	for i := range names {
		names[i] = strings.TrimSpace(names[i])
	}
	var due []string
	for _, op := range bound {
		if slices.Contains(names, op) {
			due = append(due, op)
		}
	}
	return due
}

// stompAcker settles deliveries on their consumer connection.
type stompAcker struct {
	conn *stompc.Conn
	raw  *stompc.Message
}

// Settle publishes sends and ACKs in one transaction confirmed by a
// receipt; a COMMIT that went out without its receipt coming back returns
// an error wrapping ErrCommitInDoubt. With nothing to publish a plain ACK
// suffices. It is not confirmed by a receipt; if it is lost, the broker
// redelivers and the processed markers written next make that copy a
// skipped duplicate.
func (a *stompAcker) Settle(ctx context.Context, sends []Outgoing, fence Fence) error {
	if len(sends) == 0 {
		if err := checkFence(ctx, fence); err != nil {
			return err
		}
		if err := a.conn.Ack(a.raw); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
		return nil
	}
	tx, err := a.conn.Begin()
	if err != nil {
		return err
	}
	for _, s := range sends {
		if err := tx.Send(s.Destination, s.Body, sendOpts(s.Headers)); err != nil {
			_ = tx.Abort()
			return fmt.Errorf("send to %s: %w", s.Destination, err)
		}
	}
	if err := tx.Ack(a.raw); err != nil {
		_ = tx.Abort()
		return fmt.Errorf("ack: %w", err)
	}
	if err := checkFence(ctx, fence); err != nil { // the claim must still be ours
		_ = tx.Abort()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// Send publishes at once, outside any transaction.
func (a *stompAcker) Send(destination string, body []byte, headers map[string]string) error {
	return a.conn.Send(destination, body, sendOpts(headers))
}

// sendOpts turns headers into a SEND frame option. Content-type travels as a
// header; persistent defaults to true so copies survive a broker restart.
func sendOpts(h map[string]string) func(*frame.Frame) error {
	return func(f *frame.Frame) error {
		if _, ok := h["persistent"]; !ok {
			f.Header.Set("persistent", "true")
		}
		for k, v := range h {
			f.Header.Set(k, v)
		}
		return nil
	}
}
