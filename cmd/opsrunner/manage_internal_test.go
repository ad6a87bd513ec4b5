package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/agent"
)

// cliAgent is one agent on free loopback ports that a test's CLI
// commands talk to, in process.
type cliAgent struct {
	server string
	dirs   string // where the test's project folders are written
}

// startCLIAgent runs an agent with embedded defaults until the test ends.
func startCLIAgent(t *testing.T) *cliAgent {
	t.Helper()
	cfg := agent.Defaults()
	cfg.HTTPAddr, cfg.EmbeddedBrokerAddr, cfg.DataDir, cfg.AgentID = "127.0.0.1:0", "127.0.0.1:0", t.TempDir(), "cli-manage"
	cfg.ShutdownTimeout = agent.Duration(5 * time.Second)
	a, err := agent.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx) }() // owner: this test; ends with cancel
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("agent stopped with: %v", err)
		}
	})
	<-a.Started()
	return &cliAgent{server: "http://" + a.HTTPAddr(), dirs: t.TempDir()}
}

// run runs the CLI with args against the agent and returns what it
// printed (stdout and stderr) and its error.
func (a *cliAgent) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return a.runCtx(t, context.Background(), &syncBuffer{}, args...)
}

// runCtx is run with a context and an output buffer the caller can read
// while the command runs.
func (a *cliAgent) runCtx(t *testing.T, ctx context.Context, out *syncBuffer, args ...string) (string, error) {
	t.Helper()
	root := newRoot(func(string) string { return "" })
	root.SetOut(out)
	root.SetErr(out)
	root.SetIn(strings.NewReader(""))
	root.SetArgs(append(args, "--server", a.server))
	root.SetContext(ctx)
	err := root.Execute()
	return out.String(), err
}

// ok runs the CLI and fails the test when it fails.
func (a *cliAgent) ok(t *testing.T, args ...string) string {
	t.Helper()
	out, err := a.run(t, args...)
	if err != nil {
		t.Fatalf("opsrunner %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// fails runs the CLI, which must fail with an error saying want.
func (a *cliAgent) fails(t *testing.T, want string, args ...string) {
	t.Helper()
	out, err := a.run(t, args...)
	if err == nil || !strings.Contains(err.Error()+out, want) {
		t.Fatalf("opsrunner %s: %v\n%s\nwant a failure saying %q", strings.Join(args, " "), err, out, want)
	}
}

// okJSON runs the CLI with -o json and decodes its output into v.
func (a *cliAgent) okJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := a.ok(t, append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("opsrunner %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// project writes a project folder named name from files.
func (a *cliAgent) project(t *testing.T, name string, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(a.dirs, name)
	for file, text := range files {
		path := filepath.Join(dir, file)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// eventually runs the CLI until check accepts its output, for what the
// agent does in the background (a dead letter after a failed message).
func (a *cliAgent) eventually(t *testing.T, what string, check func(string) bool, args ...string) string {
	t.Helper()
	var out string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if out = a.ok(t, args...); check(out) {
			return out
		}
	}
	t.Fatalf("%s: never happened; last output of opsrunner %s:\n%s", what, strings.Join(args, " "), out)
	return ""
}

// syncBuffer is a bytes.Buffer a command writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// shopFiles is the project the management tests deploy: a webhook that
// logs, one that sleeps between two log lines, and a listener whose
// operation always fails and which dead-letters at the first failure.
func shopFiles(greeting string) map[string]string {
	return map[string]string{
		"opsrunner.yaml": `project: shop
operations:
  - name: greet
    script: greet.js
    webhook: {path: greet}
  - name: slow
    script: slow.js
    timeout: 30s
    webhook: {path: slow}
  - name: fail
    script: fail.js
listeners:
  - name: in
    destination: /queue/cli-shop-in
    operations: [fail]
    redelivery: {maxRedeliveries: 0, initialDelay: 10ms}
  - name: two
    destination: /queue/cli-shop-two
    operations: [greet, fail]
`,
		"greet.js": `function handle(event) {
  log.info("greeting " + (event.body && event.body.name));
  return {greeting: "` + greeting + `"};
}
`,
		"slow.js": `async function handle(event) {
  log.info("first line");
  await sleep(1500);
  log.info("second line");
  return {done: true};
}
`,
		"fail.js": `function handle(event) { RaiseError("always fails: " + event.body); }
`,
	}
}

// Every management command against one real agent, in the order a user
// meets them: deploy (several folders, one broken), projects, scripts
// put, rollback, runs with filters and logs, listeners enable hints,
// send to the agent's own broker found through the API, dead letters,
// and delete. Subtests share the agent and build on each other.
func TestCLIManagement(t *testing.T) {
	a := startCLIAgent(t)
	shop := a.project(t, "shop", shopFiles("hello"))
	bad := a.project(t, "bad", map[string]string{
		"opsrunner.yaml": "project: bad\noperations:\n  - name: op\n    script: op.js\n",
		"op.js":          "function handle() {\n  return {;\n}\n",
	})

	t.Run("deploy several folders, one broken", func(t *testing.T) {
		out, err := a.run(t, "deploy", shop, bad)
		if err == nil || !strings.Contains(err.Error(), "1 of 2 folders failed") {
			t.Fatalf("deploy shop bad: %v; want 1 of 2 failed\n%s", err, out)
		}
		if !strings.Contains(out, "deployed shop version 1") || !strings.Contains(out, bad+": ") || !strings.Contains(out, "op.js:3:1: SyntaxError") {
			t.Fatalf("deploy output names each folder, the failure at file:line: col:\n%s", out)
		}
		var res struct{ Deploys []deployResult }
		out, _ = a.run(t, "deploy", shop, bad, "-o", "json")
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Deploys) != 2 ||
			res.Deploys[0].Version != 2 || res.Deploys[1].Error == "" {
			t.Fatalf("deploy -o json: %v %+v\n%s", err, res, out)
		}
		a.fails(t, "--project names one project", "deploy", shop, bad, "--project", "x")
	})

	t.Run("help shows real placeholders", func(t *testing.T) {
		out := a.ok(t, "deploy", "--help")
		if !strings.Contains(out, "--project NAME") || strings.Contains(out, "--project project") || !strings.Contains(out, "-o, --output FORMAT") {
			t.Fatalf("deploy --help:\n%s", out)
		}
	})

	t.Run("projects list and show", func(t *testing.T) {
		out := a.ok(t, "projects")
		if !strings.Contains(out, "PROJECT") || !strings.Contains(out, "shop") || strings.Contains(out, "bad") {
			t.Fatalf("projects:\n%s", out)
		}
		var list struct{ Projects []struct{ Name string } }
		a.okJSON(t, &list, "projects", "list")
		if len(list.Projects) != 1 || list.Projects[0].Name != "shop" {
			t.Fatalf("projects list -o json: %+v", list)
		}
		out = a.ok(t, "projects", "show", "shop")
		if !strings.Contains(out, "live version:") || !strings.Contains(out, "shop/in") || !strings.Contains(out, "/queue/cli-shop-two") {
			t.Fatalf("projects show shop:\n%s", out)
		}
		a.fails(t, `no project "nope" (404 not_found)`, "projects", "show", "nope")
		a.fails(t, "unknown output", "projects", "-o", "yaml")
	})

	t.Run("scripts put, versions and rollback", func(t *testing.T) {
		script := filepath.Join(a.dirs, "greet-v3.js")
		os.WriteFile(script, []byte(`function handle() { return {greeting: "bonjour"}; }`), 0o644)
		out := a.ok(t, "scripts", "put", "shop", "greet", script)
		if !strings.Contains(out, "deployed shop version 3 (script of greet replaced)") {
			t.Fatalf("scripts put:\n%s", out)
		}
		if out := a.ok(t, "invoke", "shop/greet"); !strings.Contains(out, "bonjour") {
			t.Fatalf("invoke after scripts put:\n%s", out)
		}
		broken := filepath.Join(a.dirs, "broken.js")
		os.WriteFile(broken, []byte("function handle() {\n  return (;\n}\n"), 0o644)
		a.fails(t, "greet.js:2:", "scripts", "put", "shop", "greet", broken)
		a.fails(t, "no operation", "scripts", "put", "shop", "nope", script)

		out = a.ok(t, "projects", "versions", "shop")
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 || !strings.HasPrefix(strings.Join(strings.Fields(lines[3]), " "), "3 *") {
			t.Fatalf("projects versions shop: want 3 versions, 3 live:\n%s", out)
		}
		if out := a.ok(t, "projects", "rollback", "shop"); !strings.Contains(out, "rolled back shop: version 2 is live") {
			t.Fatalf("projects rollback shop:\n%s", out)
		}
		if out := a.ok(t, "invoke", "shop/greet"); !strings.Contains(out, "hello") {
			t.Fatalf("invoke after rollback:\n%s", out)
		}
		var v struct{ Version int }
		a.okJSON(t, &v, "projects", "rollback", "shop", "--version", "3")
		if v.Version != 3 {
			t.Fatalf("projects rollback --version 3 -o json: %+v", v)
		}
		a.fails(t, "version 9", "projects", "rollback", "shop", "--version", "9")
		a.ok(t, "projects", "rollback", "shop", "--version", "2")
	})

	t.Run("runs filters, show and logs", func(t *testing.T) {
		a.ok(t, "invoke", "shop/greet", "--data", `{"name":"Ada"}`)
		var page struct {
			Runs []struct{ ID, Operation, Trigger, Status string }
		}
		a.okJSON(t, &page, "runs", "--trigger", "webhook", "--operation", "greet", "--status", "succeeded", "--project", "shop")
		if len(page.Runs) == 0 {
			t.Fatal("runs --trigger webhook --operation greet: none")
		}
		for _, r := range page.Runs {
			if r.Trigger != "webhook" || r.Operation != "greet" || r.Status != "succeeded" {
				t.Fatalf("runs filtered: got %+v", r)
			}
		}
		id := page.Runs[0].ID
		if out := a.ok(t, "runs", "--trigger", "listener"); strings.Contains(out, id) {
			t.Fatalf("runs --trigger listener lists webhook run %s:\n%s", id, out)
		}
		out := a.ok(t, "runs", id)
		for _, want := range []string{"run:", id, "trigger:", "webhook", "logs:", "greeting Ada"} {
			if !strings.Contains(out, want) {
				t.Fatalf("runs %s lacks %q:\n%s\n%s", id, want, out, a.ok(t, "runs"))
			}
		}
		if out := a.ok(t, "runs", id, "--logs"); !strings.Contains(out, "info  greeting Ada") || strings.Contains(out, "trigger:") {
			t.Fatalf("runs %s --logs:\n%s", id, out)
		}
		a.fails(t, "no run", "runs", "nope", "--logs")
		a.fails(t, "--logs needs a RUN-ID", "runs", "--logs")
	})

	t.Run("runs --logs -f follows a running run to its end", func(t *testing.T) {
		out := a.ok(t, "invoke", "shop/slow", "--async")
		id := strings.Fields(strings.TrimPrefix(out, "queued run "))[0]
		out = a.ok(t, "runs", id, "--logs", "-f")
		first, second := strings.Index(out, "first line"), strings.Index(out, "second line")
		if first < 0 || second < first || strings.Count(out, "first line") != 1 {
			t.Fatalf("runs %s --logs -f: want each line once, in order:\n%s", id, out)
		}
	})

	t.Run("runs --follow keeps its columns", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var buf syncBuffer
		done := make(chan error, 1)
		go func() { _, err := a.runCtx(t, ctx, &buf, "runs", "--follow"); done <- err }()
		for !strings.Contains(buf.String(), "greet") {
			time.Sleep(20 * time.Millisecond)
		}
		a.ok(t, "invoke", "shop/greet", "--data", `{"name":"a-much-longer-name-than-before"}`)
		before := strings.Count(buf.String(), "\n")
		for strings.Count(buf.String(), "\n") == before {
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("runs --follow: %v", err)
		}
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		col := strings.Index(lines[0], "STATUS")
		for _, l := range lines[1:] {
			if len(l) < col+9 || !strings.HasPrefix(l[col:], "succeeded") && !strings.HasPrefix(l[col:], "running") && !strings.HasPrefix(l[col:], "failed") {
				t.Fatalf("runs --follow: STATUS not at column %d in %q\n%s", col, l, buf.String())
			}
		}
	})

	t.Run("listeners enable says which operations stay off", func(t *testing.T) {
		a.ok(t, "listeners", "disable", "shop/two")
		out := a.ok(t, "listeners", "enable", "shop/two")
		for _, want := range []string{"enabled shop/two", "all its operations are still off", "opsrunner listeners enable shop/two greet", "opsrunner listeners enable shop/two fail"} {
			if !strings.Contains(out, want) {
				t.Fatalf("listeners enable shop/two lacks %q:\n%s", want, out)
			}
		}
		a.ok(t, "listeners", "enable", "shop/two", "greet")
		out = a.ok(t, "listeners", "enable", "shop/two")
		if !strings.Contains(out, "operations still off (they get no message): fail") || strings.Contains(out, "enable shop/two greet") {
			t.Fatalf("listeners enable shop/two with greet on:\n%s", out)
		}
		a.ok(t, "listeners", "enable", "shop/two", "fail")
		if out := a.ok(t, "listeners", "enable", "shop/two"); strings.Contains(out, "off") {
			t.Fatalf("listeners enable with every operation on:\n%s", out)
		}
		var ls struct{ Listeners []listenerView }
		a.okJSON(t, &ls, "listeners", "--q", "cli-shop")
		if len(ls.Listeners) != 2 {
			t.Fatalf("listeners -o json: %+v", ls)
		}
	})

	t.Run("send finds the agent's broker; dead letters", func(t *testing.T) {
		out := a.ok(t, "send", "/queue/cli-shop-in", "--body", "boom", "--header", "region=eu")
		if !strings.Contains(out, "sent 1 message(s)") || !strings.Contains(out, "the broker of the agent at "+a.server) {
			t.Fatalf("send:\n%s", out)
		}
		var dls struct {
			DeadLetters []struct{ ID, Listener string }
		}
		out = a.eventually(t, "a dead letter", func(s string) bool { return strings.Contains(s, "shop/in") }, "deadletters")
		a.okJSON(t, &dls, "deadletters", "list", "--listener", "shop/in")
		if len(dls.DeadLetters) != 1 || !strings.Contains(out, dls.DeadLetters[0].ID) {
			t.Fatalf("deadletters:\n%s\n-o json: %+v", out, dls)
		}
		id := dls.DeadLetters[0].ID
		out = a.ok(t, "deadletters", "show", id)
		for _, want := range []string{"always fails: boom", "region:", "eu", "body:\nboom"} {
			if !strings.Contains(out, want) {
				t.Fatalf("deadletters show lacks %q:\n%s", want, out)
			}
		}
		if out := a.ok(t, "deadletters", "replay", id); !strings.Contains(out, "replayed dead letter "+id) {
			t.Fatalf("deadletters replay:\n%s", out)
		}
		// The replayed message fails again: a new dead letter.
		a.eventually(t, "a dead letter of the replay", func(s string) bool {
			return strings.Contains(s, "shop/in") && !strings.Contains(s, id)
		}, "deadletters")
		a.okJSON(t, &dls, "deadletters")
		again := dls.DeadLetters[0].ID
		if out := a.ok(t, "deadletters", "rm", again); !strings.Contains(out, "removed dead letter "+again) {
			t.Fatalf("deadletters rm:\n%s", out)
		}
		a.fails(t, "no dead letter", "deadletters", "show", again)
		a.fails(t, "no dead letter", "deadletters", "rm", again)
		a.fails(t, "unknown command", "deadletters", "bogus")
	})

	t.Run("secrets, members and version print text or JSON", func(t *testing.T) {
		value := filepath.Join(a.dirs, "api-key")
		os.WriteFile(value, []byte("s3cret"), 0o600)
		a.ok(t, "secrets", "set", "shop", "API_KEY", "--from-file", value)
		if out := a.ok(t, "secrets", "list", "shop"); !strings.Contains(out, "NAME") || !strings.Contains(out, "API_KEY") {
			t.Fatalf("secrets list:\n%s", out)
		}
		var secrets struct{ Secrets []struct{ Name string } }
		a.okJSON(t, &secrets, "secrets", "list", "shop")
		if len(secrets.Secrets) != 1 || secrets.Secrets[0].Name != "API_KEY" {
			t.Fatalf("secrets list -o json: %+v", secrets)
		}
		a.ok(t, "secrets", "rm", "shop", "API_KEY")
		var members struct{ Leader string }
		a.okJSON(t, &members, "members")
		if out := a.ok(t, "members", "-o", "table"); !strings.Contains(out, "AGENT") {
			t.Fatalf("members -o table (the older name of text):\n%s", out)
		}
		var v buildVersion
		a.okJSON(t, &v, "version")
		if v.Version == "" || v.Go == "" {
			t.Fatalf("version -o json: %+v", v)
		}
	})

	t.Run("projects delete", func(t *testing.T) {
		a.fails(t, "add --yes", "projects", "delete", "shop")
		a.ok(t, "projects", "show", "shop")
		if out := a.ok(t, "projects", "delete", "shop", "--yes"); !strings.Contains(out, "deleted project shop") {
			t.Fatalf("projects delete:\n%s", out)
		}
		a.fails(t, "not_found", "invoke", "shop/greet")
		if out := a.ok(t, "listeners"); strings.Contains(out, "shop/") {
			t.Fatalf("listeners after delete:\n%s", out)
		}
		a.fails(t, `no project "shop"`, "projects", "delete", "shop", "--yes")
		if out := a.ok(t, "deploy", shop); !strings.Contains(out, "deployed shop version 1") {
			t.Fatalf("deploy after delete:\n%s", out)
		}
	})
}
