package agent_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/opsrunner/opsrunner/agent"
)

// brokerAuthProject: a listener on PFX.in and a webhook both SendMessage
// to PFX.effects on the default connection, the agent's embedded broker.
func brokerAuthProject(prefix string) map[string]string {
	manifest := `project: guarded
operations:
  - name: relay
    script: relay.js
  - name: hook
    script: hook.js
    webhook: {path: hook}
listeners:
  - name: in
    destination: /queue/PFX.in
    operations: [relay]
`
	return map[string]string{
		"opsrunner.yaml": strings.ReplaceAll(manifest, "PFX", prefix),
		"relay.js":       "function handle(event) { SendMessage('/queue/" + prefix + ".effects', 'relayed ' + event.body.n); }\n",
		"hook.js":        "function handle(event) { SendMessage('/queue/" + prefix + ".effects', 'hooked'); return {ok: true}; }\n",
	}
}

// With broker_users configured, the embedded broker refuses a wrong
// passcode and confines each user to its patterns, and the agent's own
// listeners and SendMessage still work: they connect as the agent's own
// user.
func TestEmbeddedBrokerWithUsers(t *testing.T) {
	prefix := fmt.Sprintf("ba%d", rand.Uint32())
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	ta := startAgent(t, func(c *agent.Config) {
		c.BrokerUsers = []agent.BrokerUser{{
			Login: "app", Passcode: string(hash),
			Read:  []string{"/queue/" + prefix + ".effects"},
			Write: []string{"/queue/" + prefix + ".in"},
		}}
	})
	ta.mustDeploy(t, "guarded", bundle(t, brokerAuthProject(prefix)))
	waitFor(t, 30*time.Second, func() bool {
		r := ta.do(t, "GET", "/api/v1/listeners?q=guarded", "", nil, nil)
		return strings.Contains(string(r.Body), `"status":"on"`)
	})

	if _, err := stomp.Dial("tcp", ta.BrokerAddr(), stomp.ConnOpt.Login("app", "wrong")); err == nil {
		t.Error("a wrong passcode connected")
	}
	if _, err := stomp.Dial("tcp", ta.BrokerAddr()); err == nil {
		t.Error("a client without a login connected")
	}
	conn, err := stomp.Dial("tcp", ta.BrokerAddr(), stomp.ConnOpt.Login("app", "s3cret"))
	if err != nil {
		t.Fatalf("app with its passcode: %v", err)
	}
	defer conn.MustDisconnect()
	effects, err := conn.Subscribe("/queue/"+prefix+".effects", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	sendJSON(t, conn, "/queue/"+prefix+".in", `{"n":1}`)
	if r := ta.do(t, "POST", "/hooks/guarded/hook", "application/json", []byte(`{}`), nil); r.Status != 200 {
		t.Fatalf("webhook: %d %s", r.Status, r.Body)
	}
	got := map[string]bool{}
	for range 2 {
		select {
		case m := <-effects.C:
			if m.Err != nil {
				t.Fatalf("effects: %v", m.Err)
			}
			got[string(m.Body)] = true
		case <-time.After(30 * time.Second):
			t.Fatalf("effects so far %v, want the listener's and the webhook's", got)
		}
	}
	if !got["relayed 1"] || !got["hooked"] {
		t.Errorf("effects %v, want the listener's and the webhook's", got)
	}

	// app may not send where it was not allowed: the broker answers ERROR.
	denied, err := stomp.Dial("tcp", ta.BrokerAddr(), stomp.ConnOpt.Login("app", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	// go-stomp closes the connection on the ERROR; its Disconnect could
	// then wait 30 s for a receipt
	defer denied.MustDisconnect()
	err = denied.Send("/queue/"+prefix+".effects", "text/plain", []byte("x"), stomp.SendOpt.Receipt)
	if err == nil || !strings.Contains(err.Error(), "no write permission") {
		t.Errorf("send outside app's patterns: %v, want an ERROR naming the write permission", err)
	}
}

// An embedded broker that other machines reach needs users: the agent
// refuses to start without, naming broker_users.
func TestOpenEmbeddedBrokerOnlyOnLoopback(t *testing.T) {
	cfg := agent.Defaults()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.EmbeddedBrokerAddr = "0.0.0.0:0"
	cfg.DataDir = t.TempDir()
	if _, err := agent.New(cfg, nil); err == nil || !strings.Contains(err.Error(), "broker_users") {
		t.Fatalf("agent on 0.0.0.0 without broker users: %v, want a refusal naming broker_users", err)
	}
	ta := startAgent(t, func(c *agent.Config) {
		c.EmbeddedBrokerAddr = "0.0.0.0:0"
		c.BrokerUsers = []agent.BrokerUser{{Login: "app", Passcode: "p", Read: []string{"*"}, Write: []string{"*"}}}
	})
	if ta.BrokerAddr() == "" {
		t.Fatal("no embedded broker")
	}
}

func TestBrokerUsersConfig(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "opsrunner.yaml")
	yaml := "broker_max_frame_bytes: 1048576\nbroker_max_pending_bytes: 65536\nbroker_users:\n" +
		"  - login: app\n    passcode: s3cret\n    read: ['/queue/orders.*']\n    write: ['/queue/orders.in']\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := agent.Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BrokerMaxFrameBytes != 1<<20 || cfg.BrokerMaxPendingBytes != 65536 || len(cfg.BrokerUsers) != 1 || cfg.BrokerUsers[0].Write[0] != "/queue/orders.in" {
		t.Errorf("loaded %d, %+v", cfg.BrokerMaxFrameBytes, cfg.BrokerUsers)
	}
	env := map[string]string{
		"OPSRUNNER_BROKER_USERS":             `[{login: ops, passcode: pw, read: ["*"]}]`,
		"OPSRUNNER_BROKER_MAX_FRAME_BYTES":   "2048",
		"OPSRUNNER_BROKER_MAX_PENDING_BYTES": "4096",
	}
	cfg, err = agent.Load(path, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BrokerMaxFrameBytes != 2048 || cfg.BrokerMaxPendingBytes != 4096 || len(cfg.BrokerUsers) != 1 || cfg.BrokerUsers[0].Login != "ops" {
		t.Errorf("from the environment: %d, %+v", cfg.BrokerMaxFrameBytes, cfg.BrokerUsers)
	}

	tests := []struct {
		name   string
		mutate func(*agent.Config)
		want   string
	}{
		{"empty login", func(c *agent.Config) { c.BrokerUsers = []agent.BrokerUser{{Passcode: "p"}} }, "login is empty"},
		{"repeated login", func(c *agent.Config) {
			c.BrokerUsers = []agent.BrokerUser{{Login: "a", Passcode: "p"}, {Login: "a", Passcode: "q"}}
		}, "repeated"},
		{"bad pattern", func(c *agent.Config) {
			c.BrokerUsers = []agent.BrokerUser{{Login: "a", Passcode: "p", Read: []string{""}}}
		}, "empty destination pattern"},
		{"users without an embedded broker", func(c *agent.Config) {
			c.BrokerURL = "stomp://127.0.0.1:61613"
			c.BrokerUsers = []agent.BrokerUser{{Login: "a", Passcode: "p"}}
		}, "no embedded broker runs"},
		{"negative frame bound", func(c *agent.Config) { c.BrokerMaxFrameBytes = -1 }, "broker_max_frame_bytes"},
		{"negative pending bound", func(c *agent.Config) { c.BrokerMaxPendingBytes = -1 }, "broker_max_pending_bytes"},
		{"open on every interface", func(c *agent.Config) { c.EmbeddedBrokerAddr = ":61613" }, "not a loopback address"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := agent.Defaults()
			tc.mutate(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}
