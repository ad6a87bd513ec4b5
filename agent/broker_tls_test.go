package agent_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/broker"
	"github.com/opsrunner/opsrunner/internal/testenv"
)

// copyFile copies src over dst through a rename, as a certificate
// rotation does.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst+".tmp", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dst+".tmp", dst); err != nil {
		t.Fatal(err)
	}
}

// dialTLS connects to a STOMP server over TLS, trusting only the CA of pki.
func dialTLS(t *testing.T, addr string, pki testenv.TLSFiles, opts ...func(*stomp.Conn) error) (*stomp.Conn, error) {
	t.Helper()
	cfg, err := pki.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	c, err := stomp.Connect(nc, append(opts, testenv.QuietLogs())...)
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	return c, nil
}

// With broker_tls_addr, the embedded broker serves STOMP over TLS with
// the same users, permissions and destinations as its plain listener, and
// picks up a new certificate written over the old one.
func TestEmbeddedBrokerOverTLS(t *testing.T) {
	dir := t.TempDir()
	first, err := testenv.WriteTestPKI(filepath.Join(dir, "first"))
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "broker.pem"), filepath.Join(dir, "broker-key.pem")
	copyFile(t, first.ServerCertFile, certFile)
	copyFile(t, first.ServerKey, keyFile)
	prefix := fmt.Sprintf("/queue/tls%d", rand.Uint32())
	ta := startAgent(t, func(c *agent.Config) {
		c.BrokerTLSAddr = "127.0.0.1:0"
		c.BrokerTLSCertFile, c.BrokerTLSKeyFile = certFile, keyFile
		c.BrokerUsers = []agent.BrokerUser{{Login: "app", Passcode: "s3cret", Read: []string{prefix + ".*"}, Write: []string{prefix + ".*"}}}
	})
	addr := ta.BrokerTLSAddr()
	if addr == "" {
		t.Fatal("no TLS listener")
	}

	if _, err := dialTLS(t, addr, first, stomp.ConnOpt.Login("app", "wrong")); err == nil || !strings.Contains(err.Error(), "access refused") {
		t.Errorf("wrong passcode over TLS: %v, want access refused", err)
	}
	conn, err := dialTLS(t, addr, first, stomp.ConnOpt.Login("app", "s3cret"))
	if err != nil {
		t.Fatalf("app over TLS: %v", err)
	}
	defer conn.MustDisconnect()
	sub, err := conn.Subscribe(prefix+".in", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := stomp.Dial("tcp", ta.BrokerAddr(), stomp.ConnOpt.Login("app", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.MustDisconnect()
	if err := plain.Send(prefix+".in", "text/plain", []byte("from tcp"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-sub.C:
		if m.Err != nil || string(m.Body) != "from tcp" {
			t.Fatalf("over TLS: %v %q", m.Err, m.Body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message over TLS within 10s")
	}
	// Permissions apply over TLS as over TCP.
	if err := conn.Send("/queue/elsewhere", "text/plain", []byte("x"), stomp.SendOpt.Receipt); err == nil || !strings.Contains(err.Error(), "no write permission") {
		t.Errorf("send outside app's patterns over TLS: %v, want an ERROR naming the write permission", err)
	}

	// Plain STOMP on the TLS port gets no CONNECTED.
	if got := plainConnect(t, addr); strings.Contains(got, "CONNECTED") {
		t.Errorf("plain STOMP on the TLS listener was answered %q", got)
	}

	// A rotated certificate is served within a second or so of the change.
	second, err := testenv.WriteTestPKI(filepath.Join(dir, "second"))
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, second.ServerKey, keyFile)
	copyFile(t, second.ServerCertFile, certFile)
	waitFor(t, 15*time.Second, func() bool {
		c, err := dialTLS(t, addr, second, stomp.ConnOpt.Login("app", "s3cret"))
		if err != nil {
			return false
		}
		c.MustDisconnect()
		return true
	})
}

// plainConnect sends a CONNECT frame in clear text to addr and returns
// what comes back before the connection ends (at most 5 s).
func plainConnect(t *testing.T, addr string) string {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = nc.Write([]byte("CONNECT\naccept-version:1.2\nlogin:app\npasscode:s3cret\n\n\x00"))
	got, _ := io.ReadAll(nc)
	return string(got)
}

// A broker without users serves TLS only on loopback, as it serves TCP.
func TestOpenBrokerTLSOnlyOnLoopback(t *testing.T) {
	pki, err := testenv.WriteTestPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ln, err := agent.ListenBrokerTLS("0.0.0.0:0", pki.ServerCertFile, pki.ServerKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Serve(context.Background(), ln); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("open broker over TLS on 0.0.0.0: Serve = %v, want a refusal naming loopback", err)
	}
	if _, err := agent.ListenBrokerTLS("127.0.0.1:0", pki.ServerCertFile, filepath.Join(t.TempDir(), "missing.pem"), nil); err == nil {
		t.Error("a missing key file was accepted")
	}
}

// With broker_users_file alone, the agent's own listeners still work (its
// own user), the file's users connect, and a change to the file applies
// to the next CONNECTs.
func TestEmbeddedBrokerUsersFile(t *testing.T) {
	prefix := fmt.Sprintf("uf%d", rand.Uint32())
	path := filepath.Join(t.TempDir(), "users.yaml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path+".tmp", []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	write("- {login: app, passcode: s3cret, read: ['/queue/" + prefix + ".effects'], write: ['/queue/" + prefix + ".in']}\n")
	ta := startAgent(t, func(c *agent.Config) { c.BrokerUsersFile = path })
	ta.mustDeploy(t, "guarded", bundle(t, brokerAuthProject(prefix)))
	waitFor(t, 30*time.Second, func() bool {
		r := ta.do(t, "GET", "/api/v1/listeners?q=guarded", "", nil, nil)
		return strings.Contains(string(r.Body), `"status":"on"`)
	})
	conn, err := stomp.Dial("tcp", ta.BrokerAddr(), stomp.ConnOpt.Login("app", "s3cret"))
	if err != nil {
		t.Fatalf("app from the users file: %v", err)
	}
	defer conn.MustDisconnect()
	effects, err := conn.Subscribe("/queue/"+prefix+".effects", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	sendJSON(t, conn, "/queue/"+prefix+".in", `{"n":7}`)
	select {
	case m := <-effects.C:
		if m.Err != nil || string(m.Body) != "relayed 7" {
			t.Fatalf("effects: %v %q", m.Err, m.Body)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the listener relayed nothing within 30s")
	}

	write("- {login: ops, passcode: 0ps, admin: true}\n")
	waitFor(t, 15*time.Second, func() bool {
		c, err := stomp.Dial("tcp", ta.BrokerAddr(), stomp.ConnOpt.Login("ops", "0ps"))
		if err != nil {
			return false
		}
		c.MustDisconnect()
		return true
	})
	if _, err := stomp.Dial("tcp", ta.BrokerAddr(), stomp.ConnOpt.Login("app", "s3cret")); err == nil {
		t.Error("app still connects after it left the users file")
	}
}

func TestBrokerTLSAndUsersFileConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]string{
		"OPSRUNNER_BROKER_TLS_ADDR":               "127.0.0.1:61614",
		"OPSRUNNER_BROKER_TLS_CERT_FILE":          "/etc/opsrunner/broker.pem",
		"OPSRUNNER_BROKER_TLS_KEY_FILE":           "/etc/opsrunner/broker-key.pem",
		"OPSRUNNER_BROKER_USERS_FILE":             "/etc/opsrunner/users.yaml",
		"OPSRUNNER_BROKER_MAX_CONNECTIONS_PER_IP": "50",
	}
	cfg, err := agent.Load("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BrokerTLSAddr != "127.0.0.1:61614" || cfg.BrokerTLSCertFile != "/etc/opsrunner/broker.pem" || cfg.BrokerTLSKeyFile != "/etc/opsrunner/broker-key.pem" ||
		cfg.BrokerUsersFile != "/etc/opsrunner/users.yaml" || cfg.BrokerMaxConnectionsPerIP != 50 {
		t.Errorf("from the environment: %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	path := filepath.Join(dir, "opsrunner.yaml")
	yaml := "broker_tls_addr: 0.0.0.0:61614\nbroker_tls_cert_file: c.pem\nbroker_tls_key_file: k.pem\nbroker_users_file: u.yaml\nbroker_max_connections_per_ip: 9\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = agent.Load(path, func(string) string { return "" })
	if err != nil || cfg.BrokerTLSAddr != "0.0.0.0:61614" || cfg.BrokerUsersFile != "u.yaml" || cfg.BrokerMaxConnectionsPerIP != 9 {
		t.Errorf("from YAML: %+v, %v", cfg, err)
	}

	tlsOn := func(c *agent.Config) {
		c.BrokerTLSAddr, c.BrokerTLSCertFile, c.BrokerTLSKeyFile = "127.0.0.1:61614", "c.pem", "k.pem"
	}
	tests := []struct {
		name   string
		mutate func(*agent.Config)
		want   string // "" = valid
	}{
		{"TLS on loopback without users", tlsOn, ""},
		{"TLS elsewhere without users", func(c *agent.Config) { tlsOn(c); c.BrokerTLSAddr = "0.0.0.0:61614" },
			"broker_tls_addr 0.0.0.0:61614 is not a loopback address and broker_users is empty"},
		{"TLS elsewhere with a users file", func(c *agent.Config) { tlsOn(c); c.BrokerTLSAddr, c.BrokerUsersFile = ":61614", "u.yaml" }, ""},
		{"TCP elsewhere with a users file", func(c *agent.Config) { c.EmbeddedBrokerAddr, c.BrokerUsersFile = ":61613", "u.yaml" }, ""},
		{"TLS without a key", func(c *agent.Config) { tlsOn(c); c.BrokerTLSKeyFile = "" }, "needs broker_tls_cert_file and broker_tls_key_file"},
		{"TLS with a CA file", func(c *agent.Config) { tlsOn(c); c.BrokerTLSCAFile = "ca.pem" }, "broker_tls_ca_file applies to the connection broker_url makes"},
		{"TLS without an embedded broker", func(c *agent.Config) { tlsOn(c); c.BrokerURL = "stomp://mq:61613" }, "no embedded broker runs"},
		{"certificate files without TLS or a broker URL", func(c *agent.Config) { c.BrokerTLSCertFile = "c.pem" }, "broker_url is not"},
		{"users file without an embedded broker", func(c *agent.Config) { c.BrokerUsersFile, c.BrokerURL = "u.yaml", "stomp://mq:61613" }, "no embedded broker runs"},
		{"negative per-address limit", func(c *agent.Config) { c.BrokerMaxConnectionsPerIP = -1 }, "broker_max_connections_per_ip"},
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
