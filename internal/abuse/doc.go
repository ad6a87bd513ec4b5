// Package abuse is a regression corpus of bad input: each case is an input
// (a script, a request, a deploy, a flood of runs) and the clear answer
// expected for it, run against a real agent process (`opsrunner serve`)
// started under a container-like address-space limit.
//
// Besides its own answer, every case checks that the agent survived it: the
// process is alive, it still answers another project's webhook (the canary)
// within a few seconds, and no answer leaks Go internals. The package has
// only tests; `go test ./internal/abuse/` (and so `make test`) runs them.
package abuse
