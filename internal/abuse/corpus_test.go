package abuse

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// abuseCase is one entry of the corpus: an input and the clear answer
// expected for it.
type abuseCase struct {
	name    string        // also the name of the project the case deploys
	script  string        // the operation's script; "" deploys nothing
	timeout time.Duration // the operation's timeout; 0 means 2s
	req     request       // what is sent
	want    want          // what must come back
	within  time.Duration // time bound for the answer; 0 means timeout + 5s
	copies  int           // the request is sent this many times at once; 0 means 1
	// check, when set, checks more than the answer (the run record, ...).
	check func(t *testing.T, a *agent, c abuseCase, got answer)
}

// anyFailure as want.status accepts 500 or 504: the run failed, and said so.
const anyFailure = -1

// want is the expected answer.
type want struct {
	status  int               // HTTP status, or anyFailure
	code    string            // error.code; "" checks none
	message string            // regexp the error message (the body, for a 2xx) must match
	header  map[string]string // header → regexp its value must match
}

// Scripts that loop for ever inside the encoding of their result.
const (
	toJSONLoop = `function handle() { return {toJSON() { while (true) {} }}; }`
	getterLoop = `function handle() { return {get x() { while (true) {} }}; }`
	proxyLoop  = `function handle() {
  const spin = () => { while (true) {} };
  return new Proxy({}, {ownKeys: spin, get: spin, has: spin, getOwnPropertyDescriptor: spin});
}`
)

// An echo operation: it would run if the request got past the HTTP checks.
const echoScript = `function handle(event) { return {ran: true, body: event.body}; }`

// Expected answers that several cases share.
var (
	encodingTimeout = want{status: 504, code: "timeout", message: `operation "op" exceeded its 2s timeout while encoding its result`}
	runTimeout      = want{status: 504, code: "timeout", message: `operation "op" exceeded its 2s timeout`}
	rangeError      = want{status: 500, code: "script_error", message: `RangeError`}
	overMemoryLimit = want{status: 500, message: `(?i)memory limit`}
	badProjectName  = want{status: 400, message: `(?i)name`}
)

// corpus is the specification: each bad input and the answer it must get.
// After every case the agent must be alive and serve another project.
var corpus = []abuseCase{
	// Result encoding runs under the operation's time limit.
	{name: "encode-tojson-loop", script: toJSONLoop, want: encodingTimeout, check: recorded("timed_out")},
	{name: "encode-getter-loop", script: getterLoop, want: encodingTimeout, check: recorded("timed_out")},
	{name: "encode-proxy-loop", script: proxyLoop, want: encodingTimeout, check: recorded("timed_out")},
	// As many stuck encodings as the agent has workers: they must not take the agent down.
	{name: "encode-tojson-loop-every-worker", script: toJSONLoop, want: encodingTimeout, copies: workers},

	// No single operation allocates past the memory bound: a catchable RangeError.
	{name: "alloc-arraybuffer", timeout: 5 * time.Second, script: `function handle() { return new ArrayBuffer(3e9).byteLength; }`, want: rangeError},
	{name: "alloc-typed-array", timeout: 5 * time.Second, script: `function handle() { return new Float64Array(4e8).length; }`, want: rangeError},
	{name: "alloc-repeat", timeout: 5 * time.Second, script: `function handle() { return "x".repeat(2 ** 30).length; }`, want: rangeError},
	{name: "alloc-padstart", timeout: 5 * time.Second, script: `function handle() { return "".padStart(2 ** 30).length; }`, want: rangeError},
	{name: "alloc-array-join", timeout: 5 * time.Second, script: `function handle() { return Array(1e9).join("x").length; }`, want: rangeError},
	{name: "alloc-json-stringify", timeout: 5 * time.Second, script: `function handle() {
  const s = "x".repeat(1 << 24);
  return JSON.stringify(Array(200).fill(s)).length;
}`, want: rangeError},
	// Built-ins that walk a sparse array's length in Go: map allocated 64 GB
	// at once (the process died), indexOf and spread ran for minutes past
	// the timeout, holding a worker.
	{name: "walk-sparse-map", timeout: 5 * time.Second, script: `function handle() { return Array(4e9).map(x => x).length; }`, want: rangeError},
	{name: "walk-sparse-indexof", timeout: 2 * time.Second, script: `function handle() { return Array(4e9).indexOf(1); }`, want: rangeError},
	{name: "walk-sparse-spread", timeout: 2 * time.Second, script: `function handle() { return [...Array(4e9)].length; }`, want: rangeError},
	{name: "walk-apply-array-like", timeout: 2 * time.Second, script: `function handle() { return Math.max.apply(null, {length: 4e9}); }`, want: rangeError},
	{name: "alloc-rangeerror-catchable", timeout: 5 * time.Second, script: `function handle() {
  try { new ArrayBuffer(3e9); } catch (e) { return {caught: e instanceof RangeError}; }
  return {caught: false};
}`, want: want{status: 200, message: `^\{"caught":true\}$`}},

	// Runaway code, wherever it runs, ends in a timeout.
	{name: "runaway-handler", script: `function handle() { while (true) {} }`, want: runTimeout, check: recorded("timed_out")},
	{name: "runaway-module", script: "while (true) {}\nfunction handle() { return 1; }", want: runTimeout, check: recorded("timed_out")},
	{name: "deep-recursion", script: `function f(n) { return f(n + 1) + 1; }
function handle() { return f(0); }`, want: want{status: 500, code: "script_error", message: `call stack`}},
	{name: "promise-never-settles", script: `function handle() { return new Promise(() => {}); }`,
		want: want{status: anyFailure, message: `never settled|timeout`}},
	{name: "await-never-settles", script: `async function handle() { await new Promise(() => {}); return 1; }`,
		want: want{status: anyFailure, message: `never settled|timeout`}},

	// Logs and chain variables are bounded, not fatal.
	{name: "logs-many-lines", timeout: 10 * time.Second, script: `function handle() {
  for (let i = 0; i < 100000; i++) log.info("line", i);
  return "done";
}`, want: want{status: 200, message: `^"done"$`}, check: logsBounded},
	{name: "logs-huge-lines", timeout: 10 * time.Second, script: `function handle() {
  const s = "x".repeat(10e6);
  for (let i = 0; i < 5; i++) log.info(s);
  return "done";
}`, want: want{status: 200, message: `^"done"$`}, check: logsBounded},
	{name: "set-huge-values", timeout: 5 * time.Second, script: `function handle() {
  Set("big", "x".repeat(16 << 20));
  Set("obj", {a: "y".repeat(16 << 20)});
  return Get("big").length + $vars.obj.a.length;
}`, want: want{status: 200, message: `^33554432$`}},
	{name: "set-values-without-end", timeout: 10 * time.Second, script: `function handle() {
  for (let i = 0; ; i++) Set("k" + i, String(i % 10).repeat(1 << 20));
}`, want: overMemoryLimit},

	// HTTP semantics.
	{name: "status-out-of-range", script: `function handle() { return {status: 99999, body: "x"}; }`,
		want: want{status: 500, code: "script_error", message: `(?i)status.*99999|99999.*status`}},
	{name: "invalid-json", script: echoScript,
		req:  request{header: map[string]string{"Content-Type": "application/json"}, body: `{"a": 1,,}`},
		want: want{status: 400, code: "invalid_json", message: `(?i)json.*\d`}},
	{name: "body-oversized", script: echoScript,
		req:  request{header: map[string]string{"Content-Type": "text/plain"}, body: strings.Repeat("a", 2<<20)},
		want: want{status: 413, code: "payload_too_large"}},
	{name: "webhook-get", script: echoScript, req: request{method: http.MethodGet},
		want: want{status: 405, header: map[string]string{"Allow": `POST`}}},
	{name: "api-unknown-path", req: request{method: http.MethodGet, path: "/api/v1/nosuch"},
		want: want{status: 404, code: "not_found"}},
	{name: "deploy-name-dotdot", req: mustDeployRequest(".."), want: badProjectName},
	{name: "deploy-name-space", req: mustDeployRequest("a b"), want: badProjectName},
	{name: "deploy-name-300-chars", req: mustDeployRequest(strings.Repeat("a", 300)), want: badProjectName},
	{name: "deploy-name-uppercase", req: mustDeployRequest("Orders"), want: badProjectName},
	// The rule's edges: these names are fine.
	{name: "deploy-name-63-chars", req: mustDeployRequest(strings.Repeat("b", 63)), want: want{status: 201}},
	{name: "deploy-name-punctuation", req: mustDeployRequest("my-app_v1.2"), want: want{status: 201}},
}

// mustDeployRequest is a deploy of a valid project as name (for the corpus
// table, built when the package loads: bundling fixed files cannot fail).
func mustDeployRequest(name string) request {
	r, err := deployRequest(strings.ReplaceAll(name, " ", "%20"), project(name, 2*time.Second, echoScript))
	if err != nil {
		panic(err)
	}
	return r
}

// TestCorpus runs the corpus on one agent at a time, under the
// address-space limit, replacing the agent after a case that failed.
func TestCorpus(t *testing.T) {
	f := newFixture(t)
	for _, c := range corpus {
		t.Run(c.name, func(t *testing.T) {
			defer f.done(t)
			runCase(t, f.agent(t), c)
		})
	}
}

// runCase deploys the case's project, sends its request and checks the
// answer, then checks that the agent survived.
func runCase(t *testing.T, a *agent, c abuseCase) {
	if c.timeout == 0 {
		c.timeout = 2 * time.Second
	}
	if c.within == 0 {
		c.within = c.timeout + 5*time.Second
	}
	if c.script != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := a.deploy(ctx, c.name, project(c.name, c.timeout, c.script))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	if c.req.path == "" {
		c.req.path = "/hooks/" + c.name + "/op"
	}
	for _, r := range send(a, c.req, c.within, max(c.copies, 1)) {
		if r.err != nil {
			t.Errorf("no answer within %s: %v", c.within, r.err)
			continue
		}
		t.Logf("answer after %s: %d %.300s", r.took.Round(time.Millisecond), r.status, r.body)
		checkAnswer(t, c.want, r.answer)
		if c.check != nil {
			c.check(t, a, c, r.answer)
		}
	}
	a.checkServing(t)
}

// send sends r copies times at once, each waiting at most within, and
// returns the results.
func send(a *agent, r request, within time.Duration, copies int) []result {
	results := make([]result, copies)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), within)
			defer cancel()
			got, err := a.do(ctx, r)
			results[i] = result{got, err}
		})
	}
	wg.Wait()
	return results
}

// checkAnswer compares an answer with the expected one.
func checkAnswer(t *testing.T, w want, got answer) {
	t.Helper()
	switch {
	case w.status == anyFailure && got.status != 500 && got.status != 504:
		t.Errorf("status %d, want a failure (500 or 504)", got.status)
	case w.status != anyFailure && got.status != w.status:
		t.Errorf("status %d, want %d", got.status, w.status)
	}
	if w.code != "" && got.code != w.code {
		t.Errorf("error code %q, want %q", got.code, w.code)
	}
	text := got.message
	if got.status < 300 {
		text = string(got.body)
	}
	if w.message != "" && !regexp.MustCompile(w.message).MatchString(text) {
		t.Errorf("message %q does not match %q", text, w.message)
	}
	for k, re := range w.header {
		if v := got.header.Get(k); !regexp.MustCompile(re).MatchString(v) {
			t.Errorf("header %s %q does not match %q", k, v, re)
		}
	}
	if m := goInternals.Find(got.body); m != nil {
		t.Errorf("the answer leaks Go internals (%q): %.300s", m, got.body)
	}
}

// recorded checks that the case's run has a record with status, whose
// error leaks no Go internals.
func recorded(status string) func(t *testing.T, a *agent, c abuseCase, got answer) {
	return func(t *testing.T, a *agent, c abuseCase, got answer) {
		t.Helper()
		run, ok := theRun(t, a, c, status)
		if !ok {
			return
		}
		if m := goInternals.FindString(run.Error); m != "" {
			t.Errorf("the run's error leaks Go internals (%q): %.300s", m, run.Error)
		}
	}
}

// theRun returns the case's one run record, reporting an error unless
// there is exactly one, with status.
func theRun(t *testing.T, a *agent, c abuseCase, status string) (runView, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	runs, err := a.runs(ctx, "project="+c.name+"&operation=op")
	if err != nil {
		t.Errorf("run record: %v", err)
		return runView{}, false
	}
	if len(runs) != 1 || runs[0].Status != status {
		t.Errorf("%d run records, want one %s: %.500v", len(runs), status, runs)
		return runView{}, false
	}
	return runs[0], true
}

// Bounds on one run's logs in its record.
const (
	maxRecordedLogLines = 10_000
	maxRecordedLogBytes = 16 << 20
)

// logsBounded checks that the case's run is recorded as succeeded with
// logs within maxRecordedLogLines and maxRecordedLogBytes.
func logsBounded(t *testing.T, a *agent, c abuseCase, got answer) {
	t.Helper()
	run, ok := theRun(t, a, c, "succeeded")
	if !ok {
		return
	}
	lines, size := len(run.Logs), 0
	for _, l := range run.Logs {
		size += len(l.Message)
	}
	t.Logf("recorded logs: %d lines, %d bytes", lines, size)
	if lines > maxRecordedLogLines || size > maxRecordedLogBytes {
		t.Errorf("recorded logs: %d lines, %d bytes; want at most %d lines and %d bytes", lines, size, maxRecordedLogLines, maxRecordedLogBytes)
	}
}
