package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/go-stomp/stomp/v3"

	"github.com/opsrunner/opsrunner/agent"
)

// With broker_ws_addr, the embedded broker serves STOMP over WebSocket at
// /stomp with the same users as its TCP listener.
func TestEmbeddedBrokerOverWebSocket(t *testing.T) {
	ta := startAgent(t, func(c *agent.Config) {
		c.BrokerWSAddr = "127.0.0.1:0"
		c.BrokerUsers = []agent.BrokerUser{{Login: "app", Passcode: "p", Read: []string{"/queue/ws.*"}, Write: []string{"/queue/ws.*"}}}
	})
	if ta.BrokerWSAddr() == "" {
		t.Fatal("no WebSocket listener")
	}
	url := "ws://" + ta.BrokerWSAddr() + "/stomp"
	dial := func(login, passcode string) (*stomp.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"v12.stomp"}})
		if err != nil {
			t.Fatalf("dial %s: %v", url, err)
		}
		if ws.Subprotocol() != "v12.stomp" {
			t.Errorf("subprotocol %q, want v12.stomp", ws.Subprotocol())
		}
		return stomp.Connect(websocket.NetConn(context.Background(), ws, websocket.MessageText), stomp.ConnOpt.Login(login, passcode))
	}
	if _, err := dial("app", "wrong"); err == nil || !strings.Contains(err.Error(), "access refused") {
		t.Errorf("wrong passcode over WebSocket: %v, want access refused", err)
	}
	c, err := dial("app", "p")
	if err != nil {
		t.Fatalf("CONNECT over WebSocket: %v", err)
	}
	defer c.MustDisconnect()
	sub, err := c.Subscribe("/queue/ws.in", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	// A message sent over TCP reaches the WebSocket subscriber.
	tcp, err := stomp.Dial("tcp", ta.BrokerAddr(), stomp.ConnOpt.Login("app", "p"))
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.MustDisconnect()
	if err := tcp.Send("/queue/ws.in", "text/plain", []byte("from tcp"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-sub.C:
		if m.Err != nil || string(m.Body) != "from tcp" {
			t.Fatalf("got %v %q", m.Err, m.Body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message over WebSocket within 10s")
	}
}

func TestBrokerWSAddrConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "opsrunner.yaml")
	if err := os.WriteFile(path, []byte("broker_ws_addr: 127.0.0.1:15674\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := agent.Load(path, func(string) string { return "" })
	if err != nil || cfg.BrokerWSAddr != "127.0.0.1:15674" {
		t.Errorf("from YAML: %q, %v", cfg.BrokerWSAddr, err)
	}
	env := map[string]string{"OPSRUNNER_BROKER_WS_ADDR": "127.0.0.1:25674"}
	cfg, err = agent.Load("", func(k string) string { return env[k] })
	if err != nil || cfg.BrokerWSAddr != "127.0.0.1:25674" {
		t.Errorf("from the environment: %q, %v", cfg.BrokerWSAddr, err)
	}
	users := []agent.BrokerUser{{Login: "app", Passcode: "p"}}
	tests := []struct {
		name   string
		mutate func(*agent.Config)
		want   string // "" = valid
	}{
		{"off", func(c *agent.Config) {}, ""},
		{"loopback without users", func(c *agent.Config) { c.BrokerWSAddr = "127.0.0.1:15674" }, ""},
		{"elsewhere without users", func(c *agent.Config) { c.BrokerWSAddr = "0.0.0.0:15674" }, "broker_ws_addr 0.0.0.0:15674 is not a loopback address and broker_users is empty"},
		{"elsewhere with users", func(c *agent.Config) { c.BrokerWSAddr, c.BrokerUsers = ":15674", users }, ""},
		{"no embedded broker", func(c *agent.Config) {
			c.BrokerWSAddr, c.BrokerURL = "127.0.0.1:15674", "stomp://broker.example:61613"
		}, "no embedded broker runs"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := agent.Defaults()
			cfg.DataDir = dir
			tc.mutate(&cfg)
			err := cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
}
