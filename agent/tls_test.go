package agent_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/internal/testenv"
)

// A connection may reach its broker over TLS with a private CA and a client
// certificate (mutual TLS), as company brokers are often run. The test
// brokers (RabbitMQ and ActiveMQ) have a STOMP TLS listener that requires a
// client certificate; a wrong trust or a missing certificate leaves the
// listener in a visible error and the message where it was.
func TestListenerOverMutualTLS(t *testing.T) {
	for _, bc := range []struct {
		kind   string
		broker func(testing.TB) *testenv.Broker
		// noCert is what a client without a certificate is told.
		noCert string
	}{
		{"rabbitmq", testenv.RabbitMQ, "certificate required"},
		{"activemq", testenv.ActiveMQ, "bad certificate"},
	} {
		t.Run(bc.kind, func(t *testing.T) {
			t.Parallel()
			testListenerOverMutualTLS(t, bc.broker(t), bc.noCert)
		})
	}
}

func testListenerOverMutualTLS(t *testing.T, b *testenv.Broker, noCert string) {
	if b.TLSAddr == "" {
		t.Fatalf("the test %s has no TLS listener", b.Kind)
	}
	url := fmt.Sprintf("stomp+ssl://%s:%s@%s", b.Login, b.Passcode, b.TLSAddr)
	ta := startAgent(t, func(c *agent.Config) {
		c.Connections = map[string]agent.Connection{
			"secure":    {URL: url, Host: b.Host, TLSCAFile: b.TLS.CAFile, TLSCertFile: b.TLS.ClientCertFile, TLSKeyFile: b.TLS.ClientKey},
			"untrusted": {URL: url, Host: b.Host, TLSCertFile: b.TLS.ClientCertFile, TLSKeyFile: b.TLS.ClientKey}, // the system's CAs
			"nocert":    {URL: url, Host: b.Host, TLSCAFile: b.TLS.CAFile},
		}
	})
	prefix := fmt.Sprintf("tls%d", rand.Uint32())
	manifest := "project: tls\noperations:\n  - name: op\n    script: op.js\nlisteners:\n"
	for _, conn := range []string{"secure", "untrusted", "nocert"} {
		manifest += fmt.Sprintf("  - name: %[1]s\n    connection: %[1]s\n    destination: /queue/%[2]s.%[1]s\n    operations: [op]\n", conn, prefix)
	}
	ta.mustDeploy(t, "tls", bundle(t, map[string]string{
		"opsrunner.yaml": manifest,
		"op.js":          "function handle(event) { return {got: event.body.n}; }\n",
	}))

	conn, err := b.Dial(testenv.QuietLogs())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Disconnect()
	for _, name := range []string{"secure", "untrusted", "nocert"} {
		sendJSON(t, conn, "/queue/"+prefix+"."+name, `{"n": 1}`)
	}

	t.Run("with the CA and a client certificate the listener consumes", func(t *testing.T) {
		waitFor(t, 30*time.Second, func() bool {
			runs := ta.runsWhere(t, "status=succeeded")
			return len(runs) == 1 && runs[0].Listener == "tls/secure" && runs[0].Outcome == "committed"
		})
	})
	for name, want := range map[string]string{
		"untrusted": "certificate signed by unknown authority",
		"nocert":    noCert,
	} {
		t.Run(name+" fails visibly and leaves the message", func(t *testing.T) {
			waitFor(t, 30*time.Second, func() bool {
				r := ta.do(t, "GET", "/api/v1/listeners?q="+name, "", nil, nil)
				return strings.Contains(string(r.Body), want)
			})
			for _, r := range ta.runsWhere(t, "project=tls") {
				if r.Listener == "tls/"+name {
					t.Errorf("a run on %s: %+v", name, r)
				}
			}
			if left := drain(t, conn, "/queue/"+prefix+"."+name, 2*time.Second); len(left) != 1 {
				t.Errorf("%d messages left on the queue, want 1", len(left))
			}
		})
	}
}

// TLS settings are checked when the agent starts: a missing file or TLS
// files on a plain connection are configuration errors naming the
// connection.
func TestConnectionTLSSettingsAreValidated(t *testing.T) {
	pki, err := testenv.WriteTestPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		conn agent.Connection
		want string
	}{
		"missing CA file":     {agent.Connection{URL: "stomp+ssl://mq:61614", TLSCAFile: "/nonexistent/ca.pem"}, "tls_ca_file"},
		"CA file without PEM": {agent.Connection{URL: "stomp+ssl://mq:61614", TLSCAFile: pki.ServerKey}, "no PEM certificate"},
		"certificate only":    {agent.Connection{URL: "stomp+ssl://mq:61614", TLSCertFile: pki.ClientCertFile}, "set both or neither"},
		"mismatched key":      {agent.Connection{URL: "stomp+ssl://mq:61614", TLSCertFile: pki.ClientCertFile, TLSKeyFile: pki.ServerKey}, "tls_cert_file"},
		"TLS file, plain URL": {agent.Connection{URL: "stomp://mq:61613", TLSCAFile: pki.CAFile}, "TLS is off"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := agent.Defaults()
			cfg.Connections = map[string]agent.Connection{"mq": tc.conn}
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), "connection mq") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error about connection mq saying %q", err, tc.want)
			}
		})
	}
	t.Run("tls: true on a stomp:// URL with all files is fine", func(t *testing.T) {
		cfg := agent.Defaults()
		cfg.Connections = map[string]agent.Connection{"mq": {URL: "stomp://mq:61614", TLS: true, TLSCAFile: pki.CAFile, TLSCertFile: pki.ClientCertFile, TLSKeyFile: pki.ClientKey}}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("OPSRUNNER_BROKER_TLS_* give the default connection its files", func(t *testing.T) {
		env := map[string]string{
			"OPSRUNNER_BROKER_URL":           "stomp+ssl://mq:61614",
			"OPSRUNNER_BROKER_TLS_CA_FILE":   pki.CAFile,
			"OPSRUNNER_BROKER_TLS_CERT_FILE": pki.ClientCertFile,
			"OPSRUNNER_BROKER_TLS_KEY_FILE":  pki.ClientKey,
		}
		cfg, err := agent.Load("", func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		c := cfg.Connections["default"]
		if c.TLSCAFile != pki.CAFile || c.TLSCertFile != pki.ClientCertFile || c.TLSKeyFile != pki.ClientKey {
			t.Errorf("default connection = %+v", c)
		}
	})
	t.Run("OPSRUNNER_BROKER_TLS_* without a broker URL is an error", func(t *testing.T) {
		cfg, err := agent.Load("", func(k string) string {
			return map[string]string{"OPSRUNNER_BROKER_TLS_CA_FILE": pki.CAFile}[k]
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "broker_url is not") {
			t.Fatalf("Validate() = %v", err)
		}
	})
}
