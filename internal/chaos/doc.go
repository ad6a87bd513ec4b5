// Package chaos holds the cluster chaos test (issues 5 and 20): three
// `opsrunner serve` processes sharing a real Redis and a broker, killed
// with SIGKILL and restarted while they process messages, with Redis and
// the broker restarted once each.
//
// Two listeners take the inputs: "in", bound to one operation, and "pair",
// bound to two operations of which one fails the first delivery of 30 % of
// the messages. The test checks that every (message, operation) effect
// appears exactly once and, from the run history, that no operation ran
// again for a message after it had committed or after it had succeeded
// beside its failing sibling. It measures the takeover after each kill
// (from the kill to the commit of the messages the killed agent held),
// leader failover, least-load skew and the cost of Redis coordination.
//
// The package has no non-test code; run it with `make test-cluster` (or
// -short for a reduced run).
package chaos
