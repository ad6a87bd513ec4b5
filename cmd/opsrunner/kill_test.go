package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/opsrunner/opsrunner/internal/testenv"
)

// slowEffectProject is a project named name whose listener operation sends
// an effect (to /queue/<name>.effects) inside the delivery's transaction and
// then busy-waits, so that an agent can be killed while the run is in
// flight. Its input is /queue/<name>.in; maxRedeliveries is the listener's.
func slowEffectProject(name string, maxRedeliveries int) (manifest, script string) {
	manifest = fmt.Sprintf(`project: %[1]s
operations:
  - name: Slow Effect
    script: slow.js
    timeout: 6s
listeners:
  - name: in
    destination: /queue/%[1]s.in
    ackMode: onSuccess
    ackTimeout: 12s
    consumers: 1
    operations: [Slow Effect]
    redelivery: {maxRedeliveries: %[2]d, initialDelay: 100ms}
`, name, maxRedeliveries)
	script = fmt.Sprintf(`function handle(event) {
  SendMessage("/queue/%s.effects", {id: event.body.id, attempt: event.deliveryCount});
  var t = Date.now();
  while (Date.now() - t < 3000) {}
  return {ok: event.body.id};
}
`, name)
	return manifest, script
}

// TestAgentKill9MidRunRedelivers crashes an agent (SIGKILL) while a listener
// run is in flight, after the run has sent an effect message in the
// delivery's transaction. The broker must give the message back, a new agent
// on the same data directory and broker must process it, the effect must
// appear exactly once (the crashed run's send never happened) and the input
// queue must end empty.
func TestAgentKill9MidRunRedelivers(t *testing.T) {
	b, err := testenv.StartEmbedded()
	if err != nil {
		testenv.Unavailable(t, "embedded broker", err)
	}
	t.Cleanup(func() { b.Stop(); os.RemoveAll(b.Dir) })
	b.LogOnFailure(t)

	manifest, script := slowEffectProject("kill9", 3)
	env, url, first, logs, conn := startDeployed(t, b, "kill9", manifest, script)
	if err := conn.Send("/queue/kill9.in", "application/json", []byte(`{"id":"K-1"}`),
		stomp.SendOpt.Header("persistent", "true"), stomp.SendOpt.Receipt); err != nil {
		t.Fatalf("send: %v", err)
	}

	how := waitInFlight(t, url, logs.String)
	// The script sends its effect first thing; give it a moment to have
	// done so, well inside its 3 s busy wait.
	time.Sleep(300 * time.Millisecond)
	t.Logf("run in flight (%s); kill -9 the agent", how)
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()

	url2, second, logs2 := serve(t, env...)
	run := waitRun(t, url2, 20*time.Second, logs2.String, func(r runView) bool {
		return r.Operation == "Slow Effect" && r.Outcome != ""
	})
	if run.Status != "succeeded" || run.Outcome != "committed" {
		t.Fatalf("redelivered run: status %q outcome %q error %q", run.Status, run.Outcome, run.Error)
	}
	t.Logf("after the crash: run %s of message %s, attempt %d, %s/%s", run.ID, run.MessageID, run.Attempt, run.Status, run.Outcome)

	// Stop the agent gracefully so that nothing competes for the queues.
	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.Wait(); err != nil {
		t.Fatalf("second agent exit: %v\n%s", err, logs2.String())
	}

	effects := drainQueue(t, b, "/queue/kill9.effects", time.Second)
	if len(effects) != 1 {
		t.Fatalf("effects: got %d messages %q, want exactly 1", len(effects), effects)
	}
	if !strings.Contains(effects[0], `"K-1"`) {
		t.Errorf("effect body %s does not name the message", effects[0])
	}
	if left := drainQueue(t, b, "/queue/kill9.in", 500*time.Millisecond); len(left) != 0 {
		t.Fatalf("input queue not empty: %q", left)
	}
}

// startDeployed starts an agent process on broker b, deploys the project
// name (its manifest and slow.js) and waits until its listener is on. It
// returns the agent's environment (a restart with it reuses its data
// directory), its URL, process and output, and a client connection to b
// that is closed when the test ends.
func startDeployed(t *testing.T, b *testenv.Broker, name, manifest, script string) ([]string, string, *exec.Cmd, *bytes.Buffer, *stomp.Conn) {
	t.Helper()
	proj := t.TempDir()
	for file, text := range map[string]string{"opsrunner.yaml": manifest, "slow.js": script} {
		if err := os.WriteFile(filepath.Join(proj, file), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	brokerURL := "stomp://" + b.Addr
	if b.Login != "" {
		brokerURL = fmt.Sprintf("stomp://%s:%s@%s", b.Login, b.Passcode, b.Addr)
	}
	env := []string{"OPSRUNNER_BROKER_URL=" + brokerURL, "OPSRUNNER_DATA_DIR=" + t.TempDir()}
	url, agent, logs := serve(t, env...)
	if out, code := cli(t, url, "deploy", proj); code != 0 || !strings.Contains(out, "deployed "+name) {
		t.Fatalf("deploy: %d %s", code, out)
	}
	waitListening(t, url, logs.String)
	conn, err := b.Dial()
	if err != nil {
		t.Fatalf("dial broker: %v", err)
	}
	t.Cleanup(func() { _ = conn.Disconnect() })
	return env, url, agent, logs, conn
}

// runView is the part of the run JSON this test reads.
type runView struct {
	ID, Operation, Status, Outcome, Error, MessageID string
	Attempt                                          int
}

func getJSON(t *testing.T, url string, v any) error {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// waitListening waits until the agent reports its listener as "on".
func waitListening(t *testing.T, url string, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ls struct{ Listeners []struct{ Status string } }
		if err := getJSON(t, url+"/api/v1/listeners", &ls); err == nil {
			if len(ls.Listeners) == 1 && ls.Listeners[0].Status == "on" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("listener not on within 10s: %+v\n%s", ls, logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitInFlight waits until the agent has the delivery in a run: a run
// listed as running or, since the member view counts deliveries in flight,
// a member with inFlight ≥ 1. It says which signal it saw.
func waitInFlight(t *testing.T, url string, logs func() string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var runs struct{ Runs []runView }
		if err := getJSON(t, url+"/api/v1/runs?status=running", &runs); err == nil && len(runs.Runs) > 0 {
			return "listed as running"
		}
		var members struct{ Members []struct{ InFlight int } }
		if err := getJSON(t, url+"/api/v1/cluster/members", &members); err == nil {
			for _, m := range members.Members {
				if m.InFlight > 0 {
					return "member inFlight ≥ 1; the run is not listed as running"
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the message never got in flight within 10s\n%s", logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitRun polls the run history until a run matches.
func waitRun(t *testing.T, url string, limit time.Duration, logs func() string, match func(runView) bool) runView {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		var runs struct{ Runs []runView }
		if err := getJSON(t, url+"/api/v1/runs", &runs); err == nil {
			for _, r := range runs.Runs {
				if match(r) {
					return r
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching run within %s: %+v\n%s", limit, runs.Runs, logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// drainQueue takes (and acknowledges) the bodies on dest until none arrives
// for quiet, on a connection of its own that it then closes instead of
// unsubscribing: go-stomp v3.1.5's Unsubscribe can miss its receipt's
// wake-up and wait 30 s.
func drainQueue(t *testing.T, b *testenv.Broker, dest string, quiet time.Duration) []string {
	t.Helper()
	conn, err := b.Dial(testenv.QuietLogs())
	if err != nil {
		t.Fatalf("dial broker: %v", err)
	}
	defer func() { _ = conn.Disconnect() }()
	sub, err := conn.Subscribe(dest, stomp.AckClientIndividual)
	if err != nil {
		t.Fatalf("subscribe %s: %v", dest, err)
	}
	var bodies []string
	for {
		select {
		case m, ok := <-sub.C:
			if !ok {
				t.Fatalf("subscription to %s closed", dest)
			}
			if m.Err != nil {
				t.Fatalf("receive from %s: %v", dest, m.Err)
			}
			bodies = append(bodies, string(m.Body))
			if err := conn.Ack(m); err != nil {
				t.Fatalf("ack: %v", err)
			}
		case <-time.After(quiet):
			return bodies
		}
	}
}

// TestAgentCrashLoopDeadLetters kills agents (SIGKILL) mid-run on the same
// message, on the embedded broker and on ActiveMQ: the store counts the
// restarts of the redelivered message, and once they exceed maxRedeliveries
// the next agent dead-letters it without running it, instead of every agent
// crashing on it in turn for ever. No effect of the crashed runs appears.
func TestAgentCrashLoopDeadLetters(t *testing.T) {
	for _, kind := range []struct {
		name  string
		start func() (*testenv.Broker, error)
	}{{testenv.KindEmbedded, testenv.StartEmbedded}, {testenv.KindActiveMQ, testenv.StartActiveMQ}} {
		t.Run(kind.name, func(t *testing.T) {
			b, err := kind.start()
			if err != nil {
				testenv.Unavailable(t, kind.name, err)
			}
			t.Cleanup(func() { b.Stop(); os.RemoveAll(b.Dir) })
			b.LogOnFailure(t)
			crashLoop(t, b)
		})
	}
}

// crashLoop is TestAgentCrashLoopDeadLetters on broker b.
func crashLoop(t *testing.T, b *testenv.Broker) {
	manifest, script := slowEffectProject("crashloop", 1) // one redelivery allowed
	env, url, agent, logs, conn := startDeployed(t, b, "crashloop", manifest, script)
	if err := conn.Send("/queue/crashloop.in", "application/json", []byte(`{"id":"C-1"}`),
		stomp.SendOpt.Header("persistent", "true"), stomp.SendOpt.Receipt); err != nil {
		t.Fatalf("send: %v", err)
	}

	for crash := 1; crash <= 2; crash++ { // attempts 1 and 2 (maxRedeliveries 1) crash their agent
		waitInFlight(t, url, logs.String)
		time.Sleep(300 * time.Millisecond) // the run has sent its effect
		t.Logf("crash %d: kill -9 the agent mid-run", crash)
		if err := agent.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = agent.Wait()
		url, agent, logs = serve(t, env...)
	}

	run := waitRun(t, url, 30*time.Second, logs.String, func(r runView) bool { return r.Outcome != "" })
	if run.Outcome != "dead_lettered" || run.Attempt != 3 || !strings.Contains(run.Error, "without being settled") {
		t.Fatalf("third delivery: outcome %q attempt %d error %q, want dead_lettered on attempt 3 as unsettled", run.Outcome, run.Attempt, run.Error)
	}
	if err := agent.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := agent.Wait(); err != nil {
		t.Fatalf("last agent exit: %v\n%s", err, logs.String())
	}
	if dl := drainQueue(t, b, "/queue/crashloop.in.DLQ", time.Second); len(dl) != 1 || !strings.Contains(dl[0], `"C-1"`) {
		t.Fatalf("dead-letter queue: %q, want the message once", dl)
	}
	if effects := drainQueue(t, b, "/queue/crashloop.effects", 500*time.Millisecond); len(effects) != 0 {
		t.Fatalf("effects of crashed runs appeared: %q", effects)
	}
	if left := drainQueue(t, b, "/queue/crashloop.in", 500*time.Millisecond); len(left) != 0 {
		t.Fatalf("input queue not empty: %q", left)
	}
}
