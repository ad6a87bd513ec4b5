package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadLayersDefaultsYAMLAndEnvironment(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

	t.Run("defaults are the embedded single-agent setup", func(t *testing.T) {
		c, err := Load("", env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if c.HTTPAddr != "127.0.0.1:8080" || c.DataDir != "./data" || c.EmbeddedBrokerAddr != "127.0.0.1:61613" ||
			c.ClusterSize != 1 || c.RedisURL != "" || c.BrokerURL != "" || c.Workers < 1 || c.AgentID == "" {
			t.Fatalf("defaults: %+v", c)
		}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		if !c.EmbeddedBroker() || c.Connections["default"].URL != "stomp://127.0.0.1:61613" {
			t.Fatalf("default connection: %+v", c.Connections)
		}
	})
	t.Run("the environment overrides the file", func(t *testing.T) {
		p := write("http_addr: 0.0.0.0:9000\nworkers: 3\ncluster_size: 3\n")
		c, err := Load(p, env(map[string]string{"OPSRUNNER_WORKERS": "7", "OPSRUNNER_BROKER_URL": "stomp://u:p@mq:61613", "OPSRUNNER_AGENT_ID": "a1"}))
		if err != nil {
			t.Fatal(err)
		}
		if c.HTTPAddr != "0.0.0.0:9000" || c.Workers != 7 || c.ClusterSize != 3 || c.AgentID != "a1" {
			t.Fatalf("layering: %+v", c)
		}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		if c.EmbeddedBroker() || c.Connections["default"].URL != "stomp://u:p@mq:61613" {
			t.Fatalf("OPSRUNNER_BROKER_URL must replace the embedded broker: %+v", c.Connections)
		}
	})
	for name, tc := range map[string]struct {
		file string
		env  map[string]string
		want string
	}{
		"unknown YAML key":   {file: "colour: blue\n", want: "colour"},
		"bad number":         {env: map[string]string{"OPSRUNNER_CLUSTER_SIZE": "three"}, want: "OPSRUNNER_CLUSTER_SIZE"},
		"bad duration":       {file: "shutdown_timeout: soon\n", want: "soon"},
		"bad connection url": {file: "connections:\n  x: {url: 'http://nope'}\n", want: "connection x"},
		"cluster size zero":  {file: "cluster_size: 0\n", want: "cluster_size"},
	} {
		t.Run(name, func(t *testing.T) {
			path := ""
			if tc.file != "" {
				path = write(tc.file)
			}
			c, err := Load(path, env(tc.env))
			if err == nil {
				err = c.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

func TestParseBrokerURL(t *testing.T) {
	for raw, want := range map[string]BrokerURL{
		"stomp://127.0.0.1:61613":          {Addr: "127.0.0.1:61613"},
		"stomp://guest:guest@mq:61614":     {Addr: "mq:61614", Login: "guest", Passcode: "guest"},
		"stomp+ssl://mq.example.com:61617": {Addr: "mq.example.com:61617", TLS: true},
	} {
		got, err := ParseBrokerURL(raw)
		if err != nil || got != want {
			t.Errorf("%s: got %+v, %v", raw, got, err)
		}
	}
	for _, bad := range []string{"http://x:1", "stomp://nohost", "::"} {
		if _, err := ParseBrokerURL(bad); err == nil {
			t.Errorf("%s: want an error", bad)
		}
	}
}
