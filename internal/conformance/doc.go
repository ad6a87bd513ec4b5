// Package conformance holds the broker conformance suite: one set of STOMP
// behaviours (ack modes, NACK and disconnect give-back, transactions,
// durable topics, selectors, prefetch, persistence) run against every broker
// the harness can start — embedded, ActiveMQ 5.17, RabbitMQ — each asserted
// against its brokercaps entry, so the capability table is proven. Run it
// with `go test ./internal/conformance/`; it has no non-test code.
package conformance
