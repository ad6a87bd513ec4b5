// Package brokerbacklog holds the backlog tests of the embedded broker as a
// process: an `opsrunner broker` child, built without the race detector,
// with a large backlog of persistent messages on one queue, restarted
// gracefully or killed with SIGKILL while it is drained, loses no message
// and delivers none that was confirmed acknowledged again.
package brokerbacklog
