// Package triggers turns outside events into runs: the webhook trigger and
// broker listeners with the delivery lifecycle (claim, filter, run, commit or
// rollback, redelivery, dead letter).
//
// Broker listeners (Manager) behave the same on the embedded broker,
// ActiveMQ and RabbitMQ because they rely only on what all three do alike:
// each consumer is one STOMP connection with one client-individual
// subscription (prefetch 1 unless the listener says otherwise), so an
// unacknowledged message stays locked to it and a disconnect gives it back.
// A delivery's Send calls are buffered and published at commit in one STOMP
// transaction with the ACK (BEGIN, SEND..., ACK, COMMIT confirmed by a
// receipt), after checking the claim lease; a commit with nothing to
// publish is a plain ACK. The processed marker is written after the commit.
// NACK is never used. A rollback keeps the message locked for the backoff
// delay, then in one transaction ACKs it and publishes a copy carrying
// opsrunner-attempt: n+1 and opsrunner-message-id: <original id> to the same
// queue (for a topic listener, to its private queue
// /queue/opsrunner.retry.<project>.<listener>, which it also consumes);
// past maxRedeliveries the copy goes to the dead-letter destination
// (default /queue/<name>.DLQ, also for topics) with the opsrunner-error,
// -attempts, -original-destination, -original-message-id, -agent and
// -failed-at headers, and is recorded in the store. Message id and dedup key
// are the original id; a message the broker redelivers (redelivered:true,
// after a crash or disconnect) counts one more attempt.
package triggers

import (
	"context"
)

// Message is the broker message carried by a delivery.
type Message struct {
	// ID is the broker's message-id.
	ID          string
	Destination string
	// Headers holds every STOMP header of the MESSAGE frame.
	Headers map[string]string
	Body    []byte
	// Attempt counts deliveries of this message as opsrunner saw them, from 1.
	Attempt int
}

// Delivery is one broker message in flight. It ends exactly once: the first
// of Commit or Rollback settles it, later calls of the same kind are no-ops
// returning nil, and the opposite call returns ErrSettled. Safe from any
// goroutine; never blocks longer than its context allows.
type Delivery interface {
	Message() Message
	// Commit acknowledges the message, and publishes the sends made through
	// Send, atomically.
	Commit(ctx context.Context) error
	// Rollback gives the message back and discards the sends; cause is recorded.
	Rollback(ctx context.Context, cause error) error
	// Send publishes within the delivery's transaction: the message appears
	// only if the delivery commits.
	Send(ctx context.Context, destination string, body []byte, headers map[string]string) error
}

// Handler processes one delivery; it must settle it (or return an error, in
// which case the caller rolls it back).
type Handler func(ctx context.Context, d Delivery) error

// Middleware decorates a Handler with one cross-cutting behaviour.
type Middleware func(Handler) Handler
