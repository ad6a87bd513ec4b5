// Package triggers turns outside events into runs: the webhook trigger and
// broker listeners with the delivery lifecycle (claim, filter, run, commit or
// rollback, redelivery, dead letter).
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
