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
		p := write("http_addr: 0.0.0.0:9000\nworkers: 3\ncluster_size: 3\nadvertise_addr: a:1\n")
		c, err := Load(p, env(map[string]string{"OPSRUNNER_WORKERS": "7", "OPSRUNNER_BROKER_URL": "stomp://u:p@mq:61613", "OPSRUNNER_AGENT_ID": "a1",
			"OPSRUNNER_ADVERTISE_ADDR": "10.0.0.7:9000", "OPSRUNNER_EGRESS_MAX_BODY_BYTES": "4096", "OPSRUNNER_EGRESS_MAX_REDIRECTS": "-1"}))
		if err != nil {
			t.Fatal(err)
		}
		if c.HTTPAddr != "0.0.0.0:9000" || c.Workers != 7 || c.ClusterSize != 3 || c.AgentID != "a1" || c.AdvertiseAddr != "10.0.0.7:9000" ||
			c.Egress.MaxBodyBytes != 4096 || c.Egress.MaxRedirects != -1 {
			t.Fatalf("layering: %+v", c)
		}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		if c.EmbeddedBroker() || c.Connections["default"].URL != "stomp://u:p@mq:61613" {
			t.Fatalf("OPSRUNNER_BROKER_URL must replace the embedded broker: %+v", c.Connections)
		}
	})
	t.Run("log_format and log_level: the environment overrides the file", func(t *testing.T) {
		p := write("log_format: json\nlog_level: warn\n")
		c, err := Load(p, env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if c.LogFormat != "json" || c.LogLevel != "warn" {
			t.Fatalf("from the file: format %q level %q", c.LogFormat, c.LogLevel)
		}
		c, err = Load(p, env(map[string]string{"OPSRUNNER_LOG_FORMAT": "text", "OPSRUNNER_LOG_LEVEL": "debug"}))
		if err != nil {
			t.Fatal(err)
		}
		if c.LogFormat != "text" || c.LogLevel != "debug" {
			t.Fatalf("from the environment: format %q level %q", c.LogFormat, c.LogLevel)
		}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
	})
	for name, tc := range map[string]struct {
		file string
		env  map[string]string
		want string
	}{
		"unknown log format": {file: "log_format: xml\n", want: `log_format must be text or json, got "xml"`},
		"unknown log level":  {env: map[string]string{"OPSRUNNER_LOG_LEVEL": "verbose"}, want: `log_level must be debug, info, warn or error, got "verbose"`},
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

// NewLogger writes the format log_format names, from the level log_level
// names up.
func TestNewLoggerFormatsAndLevels(t *testing.T) {
	for _, tc := range []struct {
		format, level string
		want          []string // substrings of the output, in order
		not           string
	}{
		{"", "", []string{"level=INFO msg=info"}, "msg=debug"},
		{"text", "debug", []string{"level=DEBUG msg=debug", "level=INFO msg=info"}, ""},
		{"json", "warn", []string{`"level":"WARN","msg":"warn"`}, `"msg":"info"`},
		{"json", "error", []string{`"level":"ERROR","msg":"error"`}, `"msg":"warn"`},
	} {
		t.Run(tc.format+"/"+tc.level, func(t *testing.T) {
			var out strings.Builder
			log, err := NewLogger(&out, tc.format, tc.level)
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("debug")
			log.Info("info")
			log.Warn("warn")
			log.Error("error")
			rest := out.String()
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output lacks %q (in order): %s", w, out.String())
				}
				rest = rest[i+len(w):]
			}
			if tc.not != "" && strings.Contains(out.String(), tc.not) {
				t.Errorf("output has %q below the level: %s", tc.not, out.String())
			}
		})
	}
}
