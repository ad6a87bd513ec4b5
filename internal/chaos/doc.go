// Package chaos holds the cluster chaos test (issue 5): three `opsrunner
// serve` processes sharing a real Redis and a broker, killed with SIGKILL
// and restarted while they process messages, with Redis and the broker
// restarted once each. It checks that every input's effect message appears
// exactly once and measures leader failover, least-load skew and the cost of
// Redis coordination. The package has no non-test code; run it with
// `make test-cluster` (or -short for a reduced run).
package chaos
