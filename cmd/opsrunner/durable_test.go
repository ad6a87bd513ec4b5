package main_test

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/opsrunner/opsrunner/internal/testenv"
)

// TestAnsweredWebhookRunsSurviveKill9 answers webhooks from several clients
// at once, kills the agent (SIGKILL) right after the last answer, and
// restarts it on the same data directory: every run that was answered is in
// the history, finished. (Runs were buffered up to 200 ms before being
// written: the last ones answered were lost.)
func TestAnsweredWebhookRunsSurviveKill9(t *testing.T) {
	proj := t.TempDir()
	for file, text := range map[string]string{
		"opsrunner.yaml": "project: durable\noperations:\n  - name: Echo\n    script: echo.js\n    webhook: {path: echo}\n",
		"echo.js":        "function handle(event) { return {n: event.body.n}; }\n",
	} {
		if err := os.WriteFile(filepath.Join(proj, file), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"OPSRUNNER_DATA_DIR=" + t.TempDir()}
	server, agent, logs := serve(t, env...)
	if out, code := cli(t, server, "deploy", proj); code != 0 {
		t.Fatalf("deploy: %d %s", code, out)
	}

	const clients, perClient = 8, 25
	var (
		mu       sync.Mutex
		answered []string
		wg       sync.WaitGroup
	)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perClient {
				body := fmt.Sprintf(`{"n":%d}`, c*perClient+i)
				resp, err := http.Post(server+"/hooks/durable/echo", "application/json", strings.NewReader(body))
				if err != nil {
					t.Errorf("webhook: %v", err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("webhook: %s", resp.Status)
					return
				}
				mu.Lock()
				answered = append(answered, resp.Header.Get("X-Opsrunner-Run"))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := agent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = agent.Wait()
	if t.Failed() {
		t.Fatalf("not every webhook was answered\n%s", logs)
	}

	server, _, logs = serve(t, env...)
	var lost []string
	for _, id := range answered {
		var run runView
		if err := getJSON(t, server+"/api/v1/runs/"+id, &run); err != nil || run.Status != "succeeded" {
			lost = append(lost, fmt.Sprintf("%s (%v, status %q %s)", id, err, run.Status, run.Error))
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d of %d answered runs are not in the history as succeeded after kill -9: %s\n%s",
			len(lost), len(answered), strings.Join(lost, ", "), logs)
	}
}

// TestCommittedDeliveriesSurviveKill9 has a listener (on the embedded
// broker, in its own process) send an effect in each delivery's
// transaction, so that an effect seen means a committed delivery; the agent
// is killed (SIGKILL) as soon as the last effect arrives and restarted on
// the same data directory: every committed delivery's run is in the
// history, succeeded. Its outcome may lack: it is recorded after the
// commit, and a kill in between loses only that label.
func TestCommittedDeliveriesSurviveKill9(t *testing.T) {
	b, err := testenv.StartEmbedded()
	if err != nil {
		testenv.Unavailable(t, "embedded broker", err)
	}
	t.Cleanup(func() { b.Stop(); os.RemoveAll(b.Dir) })
	b.LogOnFailure(t)

	manifest := `project: durabledl
operations:
  - name: Effect
    script: slow.js
listeners:
  - name: in
    destination: /queue/durabledl.in
    ackMode: onSuccess
    consumers: 4
    operations: [Effect]
`
	script := `function handle(event) {
  SendMessage("/queue/durabledl.effects", {messageId: event.messageId});
  return {ok: true};
}
`
	env, server, agent, logs, conn := startDeployed(t, b, "durabledl", manifest, script)
	effects, err := conn.Subscribe("/queue/durabledl.effects", stomp.AckAuto)
	if err != nil {
		t.Fatalf("subscribe to effects: %v", err)
	}
	const n = 40
	for i := range n {
		if err := conn.Send("/queue/durabledl.in", "application/json", fmt.Appendf(nil, `{"i":%d}`, i),
			stomp.SendOpt.Header("persistent", "true")); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	var committed []string
	for len(committed) < n {
		select {
		case m := <-effects.C:
			if m.Err != nil {
				t.Fatalf("effects: %v", m.Err)
			}
			id, _, _ := strings.Cut(strings.TrimPrefix(string(m.Body), `{"messageId":"`), `"`)
			committed = append(committed, id)
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of %d effects within 20s\n%s", len(committed), n, logs)
		}
	}
	if err := agent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = agent.Wait()

	server, _, logs = serve(t, env...)
	var lost []string
	noOutcome := 0
	for _, id := range committed {
		var runs struct{ Runs []runView }
		err := getJSON(t, server+"/api/v1/runs?messageId="+url.QueryEscape(id), &runs)
		switch {
		case err != nil || len(runs.Runs) != 1 || runs.Runs[0].Status != "succeeded":
			lost = append(lost, fmt.Sprintf("%s (%v: %+v)", id, err, runs.Runs))
		case runs.Runs[0].Outcome == "":
			noOutcome++
		case runs.Runs[0].Outcome != "committed":
			lost = append(lost, fmt.Sprintf("%s (outcome %q)", id, runs.Runs[0].Outcome))
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d of %d committed deliveries are not in the history as succeeded after kill -9: %s\n%s",
			len(lost), n, strings.Join(lost, ", "), logs)
	}
	t.Logf("%d of %d committed runs lost only their outcome label", noOutcome, n)
}
