// Package triggers turns outside events into runs: the webhook trigger and
// broker listeners with the delivery lifecycle.
//
// Broker listeners (Manager) behave the same on the embedded broker,
// ActiveMQ and RabbitMQ because they rely only on what all three do alike:
// each consumer is one STOMP connection with one client-individual
// subscription (prefetch 1 unless the listener says otherwise), so an
// unacknowledged message stays locked to it and a disconnect gives it back.
// NACK is never used.
//
// A consumer (source.go) hands each message, as a Delivery, to the
// listener's handler chain (listener.go, chain): Backoff, Limit, Dedup,
// Claim, Redeliver, DeadLetter, CountStarts, Deadline and Finish, one
// middleware per file (mw_*.go), around the agent's Handler, which runs
// the operations the message is due to. Each operation settles its own
// share (OpDelivery): its sends are buffered until the message settles.
// Every settlement goes through one path (settle.go): in one STOMP
// transaction (BEGIN, SEND..., ACK, COMMIT confirmed by a receipt, after
// checking the claim lease) it publishes the committed operations' sends
// and, when some operation failed, a retry copy to the same queue (for a
// topic listener, its private queue /queue/opsrunner.retry.<project>.<listener>)
// carrying opsrunner-attempt: n+1, opsrunner-message-id: <original id>,
// opsrunner-operations: <the failed ones> and opsrunner-not-before: <end
// of the backoff>; past maxRedeliveries the copy goes to the dead-letter
// destination (default /queue/<name>.DLQ, also for topics) with the
// opsrunner-error, -attempts, -original-destination, -original-message-id,
// -agent and -failed-at headers, and is recorded in the store. A commit
// with nothing to publish is a plain ACK. After it, a processed marker per
// listener, operation and dedup key is written in the coordinator, so that
// no redelivery runs an operation that committed. Message id and dedup key
// are the original id; a message the broker redelivers (redelivered:true,
// after a crash or disconnect) counts one more attempt.
package triggers

import (
	"context"
	"iter"
)

// Message is the broker message carried by a delivery.
type Message struct {
	// ID is the broker's message-id.
	ID          string
	Destination string
	// Headers holds every STOMP header of the MESSAGE frame.
	Headers Headers
	Body    []byte
	// Attempt counts deliveries of this message as opsrunner saw them, from 1.
	Attempt int
}

// Headers are a message's STOMP headers as name, value pairs in frame
// order, each name once (its first occurrence, as STOMP says). A slice
// beside the frame's own, not a map: building a map of a dozen headers
// per message was a sixteenth of the bytes a delivery allocates.
type Headers []string

// HeadersOf returns a frame's headers, given as name, value pairs, without
// repeated names: the same slice when no name repeats (the usual case),
// else a copy keeping each name's first value.
func HeadersOf(h []string) Headers {
	for i := 2; i+1 < len(h); i += 2 {
		for j := 0; j < i; j += 2 {
			if h[i] == h[j] {
				return dedupHeaders(h)
			}
		}
	}
	return Headers(h[:len(h)&^1])
}

func dedupHeaders(h []string) Headers {
	out := make(Headers, 0, len(h))
	for i := 0; i+1 < len(h); i += 2 {
		if out.index(h[i]) < 0 {
			out = append(out, h[i], h[i+1])
		}
	}
	return out
}

// Get returns the value of name, or "".
func (h Headers) Get(name string) string {
	if i := h.index(name); i >= 0 {
		return h[i+1]
	}
	return ""
}

func (h Headers) index(name string) int {
	for i := 0; i+1 < len(h); i += 2 {
		if h[i] == name {
			return i
		}
	}
	return -1
}

// Len is the number of headers.
func (h Headers) Len() int { return len(h) / 2 }

// All yields each header's name and value, in frame order.
func (h Headers) All() iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for i := 0; i+1 < len(h); i += 2 {
			if !yield(h[i], h[i+1]) {
				return
			}
		}
	}
}

// Handler processes one delivery. It settles each operation it runs
// (OpDelivery.Done); an error it returns rolls back whatever is still
// pending.
type Handler func(ctx context.Context, d *Delivery) error

// Middleware decorates a Handler with one step of the delivery lifecycle.
type Middleware func(Handler) Handler

// Chain returns h wrapped in mws, the first outermost: a delivery passes
// through them in the order given, and back out in reverse.
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}
