package abuse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/internal/testenv"
	"github.com/opsrunner/opsrunner/scripts"
)

const (
	// addressSpace is the address-space limit (bytes) every agent runs
	// under, as in a container. An idle agent needs about 1.5 GiB of it on
	// linux/amd64 (Go reserves address space up front; 1.25 GiB fails at
	// start); twice that leaves room for real work, and stays below the
	// 3e9-byte ArrayBuffer of issue 19, which must be refused, not tried.
	addressSpace = 3 << 30
	// memoryLimit is the agents' memory_limit (bytes).
	memoryLimit = 256 << 20
	// workers is the agents' worker count: a small machine's.
	workers = 2
	// maxAnswerBytes bounds how much of an answer a test reads.
	maxAnswerBytes = 32 << 20
)

// binary is the opsrunner binary TestMain builds once; limiter is the
// command prefix that runs a program under addressSpace, or limiterErr why
// there is none. TestMain sets them before any test runs.
var (
	binary     string
	limiter    []string
	limiterErr error
)

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

// runTests builds the agent (without -race: the corpus measures the
// product, and the race detector would multiply its memory) and runs the
// tests.
func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "opsrunner-abuse")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "opsrunner")
	if err := build(binary); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	limiter, limiterErr = findLimiter(binary)
	return m.Run()
}

// build compiles ./cmd/opsrunner of this module into out.
func build(out string) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	cmd := exec.Command("go", "build", "-o", out, "./cmd/opsrunner")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build opsrunner: %w\n%s", err, b)
	}
	return nil
}

// findLimiter returns a command prefix that runs a program under the
// addressSpace limit (RLIMIT_AS): prlimit(1) from util-linux, given bytes
// (its unit suffixes are not bytes: `--as=4G` crashes even /bin/true),
// else the shell's ulimit -v. It checks the prefix by running `bin
// version` under it.
func findLimiter(bin string) ([]string, error) {
	candidates := [][]string{
		{"prlimit", fmt.Sprintf("--as=%d", addressSpace), "--"},
		{"sh", "-c", fmt.Sprintf(`ulimit -v %d && exec "$@"`, addressSpace>>10), "sh"},
	}
	var errs []error
	for _, c := range candidates {
		args := append(append([]string{}, c[1:]...), bin, "version")
		out, err := exec.Command(c[0], args...).CombinedOutput()
		if err == nil {
			return c, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w: %.200s", c[0], err, out))
	}
	return nil, fmt.Errorf("no way to limit address space: %w", errors.Join(errs...))
}

// agent is one `opsrunner serve` child process. Its methods are safe for
// concurrent use.
type agent struct {
	url    string
	cmd    *exec.Cmd
	out    *tail
	done   chan struct{} // closed once the process has exited and cmd.Wait returned
	client *http.Client
}

// startAgent starts an agent under the address-space limit with its config
// and data in dir, on free loopback ports, and waits until /healthz answers.
// The goroutine it starts waits for the process; stop ends both.
func startAgent(dir string) (*agent, error) {
	httpPort, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	brokerPort, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	config := filepath.Join(dir, "config.yaml")
	yaml := fmt.Sprintf("memory_limit: %d\nworkers: %d\nshutdown_timeout: 5s\n", memoryLimit, workers)
	if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
		return nil, err
	}
	args := append(append([]string{}, limiter[1:]...), binary, "serve")
	cmd := exec.Command(limiter[0], args...)
	cmd.Env = append(envWithoutOpsrunner(),
		"OPSRUNNER_CONFIG="+config,
		fmt.Sprintf("OPSRUNNER_HTTP_ADDR=127.0.0.1:%d", httpPort),
		fmt.Sprintf("OPSRUNNER_EMBEDDED_BROKER_ADDR=127.0.0.1:%d", brokerPort),
		"OPSRUNNER_DATA_DIR="+filepath.Join(dir, "data"),
		"OPSRUNNER_WORKERS="+strconv.Itoa(workers),
		"OPSRUNNER_AGENT_ID=abuse",
	)
	a := &agent{
		url:    fmt.Sprintf("http://127.0.0.1:%d", httpPort),
		cmd:    cmd,
		out:    &tail{max: 512 << 10},
		done:   make(chan struct{}),
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}},
	}
	cmd.Stdout, cmd.Stderr = a.out, a.out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	go func() {
		_ = cmd.Wait()
		close(a.done)
	}()
	if err := a.waitHealthy(20 * time.Second); err != nil {
		a.stop()
		return nil, err
	}
	return a, nil
}

// envWithoutOpsrunner is this process's environment minus OPSRUNNER_*
// variables, so that a developer's settings do not leak into the agents.
func envWithoutOpsrunner() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OPSRUNNER_") {
			env = append(env, kv)
		}
	}
	return env
}

// waitHealthy waits until /healthz answers 200, failing early if the
// process exits.
func (a *agent) waitHealthy(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if dead, how := a.exited(); dead {
			return fmt.Errorf("agent %s before answering /healthz:\n%s", how, a.out.last(30))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		got, err := a.do(ctx, request{method: http.MethodGet, path: "/healthz"})
		cancel()
		if err == nil && got.status == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent did not answer /healthz within %s (%v):\n%s", limit, err, a.out.last(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// exited reports whether the process has exited, and how.
func (a *agent) exited() (bool, string) {
	select {
	case <-a.done:
		return true, "exited (" + a.cmd.ProcessState.String() + ")"
	default:
		return false, ""
	}
}

// stop ends the agent: SIGTERM, then SIGKILL if it has not exited within
// 10 s (its shutdown_timeout is 5 s). It blocks until the process is gone
// and reports whether SIGKILL was needed. Idempotent.
func (a *agent) stop() (killed bool) {
	a.client.CloseIdleConnections()
	if dead, _ := a.exited(); dead {
		return false
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
		return false
	case <-time.After(10 * time.Second):
	}
	_ = a.cmd.Process.Kill()
	<-a.done
	return true
}

// rss is the agent's resident set size in bytes (VmRSS).
func (a *agent) rss() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("read agent status: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmRSS %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmRSS in the agent's status")
}

// request is an HTTP request to an agent.
type request struct {
	method string // "" means POST
	path   string // "" means the case's webhook, /hooks/<case>/op
	header map[string]string
	body   string
}

// answer is what an agent answered.
type answer struct {
	status  int
	header  http.Header
	body    []byte
	code    string // error.code of an error answer
	message string // error.message of an error answer
	took    time.Duration
}

// do sends r and reads the answer (at most maxAnswerBytes of it); ctx
// bounds the whole exchange.
func (a *agent) do(ctx context.Context, r request) (answer, error) {
	return a.doWith(ctx, a.client, r)
}

// doWith is do through client.
func (a *agent) doWith(ctx context.Context, client *http.Client, r request) (answer, error) {
	method := r.method
	if method == "" {
		method = http.MethodPost
	}
	req, err := http.NewRequestWithContext(ctx, method, a.url+r.path, strings.NewReader(r.body))
	if err != nil {
		return answer{}, err
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: no answer after %s: %w", method, r.path, time.Since(start).Round(time.Millisecond), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: read answer: %w", method, r.path, err)
	}
	got := answer{status: resp.StatusCode, header: resp.Header, body: body, took: time.Since(start)}
	var e struct {
		Error struct{ Code, Message string }
	}
	if json.Unmarshal(body, &e) == nil {
		got.code, got.message = e.Error.Code, e.Error.Message
	}
	return got, nil
}

// goInternals matches what must never reach a user: Go values, addresses,
// goroutine dumps, panics, runtime frames.
var goInternals = regexp.MustCompile(`&\{|0x|goroutine |panic:|runtime\.`)

// project is the files of a project named name with one operation, "op",
// whose script is src, behind the webhook POST /hooks/<name>/op.
func project(name string, timeout time.Duration, src string) map[string]string {
	return map[string]string{
		"opsrunner.yaml": fmt.Sprintf("project: %q\noperations:\n  - name: op\n    script: op.js\n    timeout: %s\n    webhook: {path: op}\n",
			name, timeout),
		"op.js": src,
	}
}

// bundle packs files as a deployable gzipped tar.
func bundle(files map[string]string) ([]byte, error) {
	m := make(map[string][]byte, len(files))
	for k, v := range files {
		m[k] = []byte(v)
	}
	var buf bytes.Buffer
	if err := scripts.WriteBundle(&buf, m); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	return buf.Bytes(), nil
}

// deployRequest is the request that deploys files as project name.
func deployRequest(name string, files map[string]string) (request, error) {
	b, err := bundle(files)
	if err != nil {
		return request{}, err
	}
	return request{
		method: http.MethodPut,
		path:   "/api/v1/projects/" + name,
		header: map[string]string{"Content-Type": "application/gzip"},
		body:   string(b),
	}, nil
}

// deploy deploys files as project name and expects 200 or 201.
func (a *agent) deploy(ctx context.Context, name string, files map[string]string) error {
	r, err := deployRequest(name, files)
	if err != nil {
		return err
	}
	got, err := a.do(ctx, r)
	if err != nil {
		return fmt.Errorf("deploy %s: %w", name, err)
	}
	if got.status != http.StatusOK && got.status != http.StatusCreated {
		return fmt.Errorf("deploy %s: %d %s", name, got.status, got.body)
	}
	return nil
}

// canaryScript is the canary project's operation: innocent and quick.
const canaryScript = `function handle(event) { return {pong: event.body.ping}; }`

// deployCanary deploys the project "canary", which every case checks the
// agent still serves.
func (a *agent) deployCanary(ctx context.Context) error {
	return a.deploy(ctx, "canary", project("canary", 5*time.Second, canaryScript))
}

// canary calls the canary's webhook and checks its answer.
func (a *agent) canary(ctx context.Context) error {
	got, err := a.do(ctx, request{
		path:   "/hooks/canary/op",
		header: map[string]string{"Content-Type": "application/json"},
		body:   `{"ping": 42}`,
	})
	if err != nil {
		return fmt.Errorf("canary: %w", err)
	}
	if got.status != http.StatusOK || !strings.Contains(string(got.body), `"pong":42`) {
		return fmt.Errorf("canary: %d %.300s", got.status, got.body)
	}
	return nil
}

// canaryWithin is how long the canary may take to answer after a case.
const canaryWithin = 5 * time.Second

// checkServing fails t unless the agent is alive and its canary answers
// within canaryWithin.
func (a *agent) checkServing(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), canaryWithin)
	defer cancel()
	err := a.canary(ctx)
	if err != nil {
		// A dying agent may still be writing its crash report.
		select {
		case <-a.done:
		case <-time.After(2 * time.Second):
		}
	}
	if dead, how := a.exited(); dead {
		t.Fatalf("the agent %s; its output:\n%s", how, a.out.crash())
	}
	if err != nil {
		t.Errorf("after the case, another project's webhook: %v", err)
	}
}

// runView is the part of a run record the corpus reads.
type runView struct {
	ID     string
	Status string
	Error  string
	Logs   []struct{ Message string }
}

// runs lists the run records of project's operation "op" (newest first).
func (a *agent) runs(ctx context.Context, query string) ([]runView, error) {
	got, err := a.do(ctx, request{method: http.MethodGet, path: "/api/v1/runs?" + query})
	if err != nil {
		return nil, err
	}
	if got.status != http.StatusOK {
		return nil, fmt.Errorf("runs?%s: %d %.300s", query, got.status, got.body)
	}
	var list struct{ Runs []runView }
	if err := json.Unmarshal(got.body, &list); err != nil {
		return nil, fmt.Errorf("runs?%s: %w", query, err)
	}
	return list.Runs, nil
}

// tail keeps the last max bytes written to it; safe for concurrent use.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

// last returns the last n lines written.
func (t *tail) last(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimRight(string(t.buf), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// crashMarkers start the part of a dying Go program's output that says why.
var crashMarkers = regexp.MustCompile(`(?m)^(fatal error:|panic:|runtime: |SIGSEGV|SIGABRT)`)

// crash returns the first lines of a crash report written to the tail (the
// reason and the failing goroutine), or its last lines when there is none.
func (t *tail) crash() string {
	t.mu.Lock()
	text := string(t.buf)
	t.mu.Unlock()
	loc := crashMarkers.FindStringIndex(text)
	if loc == nil {
		return t.last(40)
	}
	lines := strings.SplitN(text[loc[0]:], "\n", 25)
	return strings.Join(lines[:min(len(lines), 24)], "\n")
}
