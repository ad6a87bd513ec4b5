package agent

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/opsrunner/opsrunner/broker"
	"github.com/opsrunner/opsrunner/destpattern"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/secrets"
)

// Config is an agent's configuration. The zero value is not usable; start
// from Defaults and apply a YAML file, the environment and flags, in that
// order (Load does all three but flags).
type Config struct {
	HTTPAddr string `yaml:"http_addr"`
	// AdvertiseAddr is the host:port other agents use to reach this one's
	// HTTP server (webhook proxying); empty means the listen address, with
	// the hostname in place of an unspecified host (0.0.0.0, ::).
	AdvertiseAddr      string `yaml:"advertise_addr"`
	DataDir            string `yaml:"data_dir"`
	EmbeddedBrokerAddr string `yaml:"embedded_broker_addr"`
	// BrokerUsers are the embedded broker's users and their permissions.
	// Without any, it accepts any login and may listen only on a loopback
	// address (Validate refuses another).
	BrokerUsers []BrokerUser `yaml:"broker_users"`
	// BrokerUsersFile, when set, is a YAML file of more embedded broker
	// users (a list shaped as broker_users), read at start and again
	// within a second of each change; a changed file that does not load
	// leaves the users as they were, with an error logged.
	BrokerUsersFile string `yaml:"broker_users_file"`
	// BrokerMaxConnectionsPerIP bounds the embedded broker's connections
	// from one IP address, loopback included; 0 means 1,000.
	BrokerMaxConnectionsPerIP int `yaml:"broker_max_connections_per_ip"`
	// BrokerTLSAddr, when set, is where the embedded broker also serves
	// STOMP over TLS (stomp+ssl), with the certificate and key of
	// BrokerTLSCertFile and BrokerTLSKeyFile, read again when they change.
	// The loopback rule of EmbeddedBrokerAddr applies to it too.
	BrokerTLSAddr string `yaml:"broker_tls_addr"`
	// BrokerMaxFrameBytes bounds a frame the embedded broker takes; 0 means 4 MiB.
	BrokerMaxFrameBytes int `yaml:"broker_max_frame_bytes"`
	// BrokerWSAddr, when set, is where the embedded broker also serves
	// STOMP over WebSocket, at /stomp; empty means no WebSocket listener.
	// The loopback rule of EmbeddedBrokerAddr applies to it too.
	BrokerWSAddr string `yaml:"broker_ws_addr"`
	// BrokerMaxPendingBytes bounds the bytes queued for writing to one
	// connection of the embedded broker; past it, delivery to that
	// connection pauses until it reads. 0 means 4 MiB.
	BrokerMaxPendingBytes int `yaml:"broker_max_pending_bytes"`
	// BrokerMemoryLimit bounds the persistent message bodies the embedded
	// broker holds in memory, across queues; past it they are read back
	// from disk on delivery. Whatever the backlog, each queue keeps at
	// most 1,000 pending messages in memory, the rest on disk. 0 means 64 MiB.
	BrokerMemoryLimit int `yaml:"broker_memory_limit"`
	// BrokerDeadLetterExpired moves messages of the embedded broker whose
	// expires time passed to their dead-letter queue instead of dropping them.
	BrokerDeadLetterExpired bool `yaml:"broker_dead_letter_expired"`
	// BrokerURL, when set, is the "default" connection and no embedded broker starts.
	BrokerURL string `yaml:"broker_url"`
	// BrokerTLSCAFile, BrokerTLSCertFile and BrokerTLSKeyFile are the
	// tls_ca_file, tls_cert_file and tls_key_file of the "default"
	// connection BrokerURL makes (for a configuration by environment).
	// Without BrokerURL, the embedded broker runs, and BrokerTLSCertFile
	// and BrokerTLSKeyFile are the certificate and key of its TLS
	// listener (BrokerTLSAddr): either way, what this agent presents on
	// its broker's TLS.
	BrokerTLSCAFile   string `yaml:"broker_tls_ca_file"`
	BrokerTLSCertFile string `yaml:"broker_tls_cert_file"`
	BrokerTLSKeyFile  string `yaml:"broker_tls_key_file"`
	RedisURL          string `yaml:"redis_url"`
	ClusterSize       int    `yaml:"cluster_size"`
	AgentID           string `yaml:"agent_id"`
	Workers           int    `yaml:"workers"`
	// MaxInflight bounds the runs in progress, waiting ones included
	// (workers bound only the runs executing JavaScript): past it webhooks
	// answer 503 with Retry-After and listeners take no more messages.
	MaxInflight int `yaml:"max_inflight"`
	// Egress bounds the fetch calls of every project.
	Egress EgressConfig `yaml:"egress"`
	// Connections are named broker connections projects refer to.
	Connections map[string]Connection `yaml:"connections"`
	// Tokens, when any is set, are the bearer tokens management calls
	// need, each with its scopes (see Token); none leaves the API open.
	Tokens []Token `yaml:"tokens"`
	// MetricsToken, when set, is a bearer token GET /metrics needs (an
	// admin token does too); empty leaves /metrics open.
	MetricsToken string `yaml:"metrics_token"`
	// TLSCertFile and TLSKeyFile, when set (both), make the HTTP server
	// serve HTTPS with this PEM certificate (its chain after it) and key,
	// read again when either file changes; other agents are then reached
	// over HTTPS too.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// MaxBodyBytes bounds webhook bodies (413 beyond); 0 means 1 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxBundleBytes bounds uploaded bundles; 0 means 10 MiB.
	MaxBundleBytes int64 `yaml:"max_bundle_bytes"`
	// RunRetention bounds run history by count and age.
	RunRetention RunRetention `yaml:"run_retention"`
	// ShutdownTimeout is how long runs in flight may finish on SIGTERM.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// MemoryLimit is the Go heap size (bytes) above which scripts are stopped; 0 means 1 GiB.
	MemoryLimit uint64 `yaml:"memory_limit"`
	// StuckGrace is how long past its time limit a run may go on before it
	// counts as stuck (members' stuckRuns), and how long past the longest
	// time limit no worker may be free before /readyz answers 503; 0 means 5s.
	StuckGrace Duration `yaml:"stuck_grace"`
	// RunDurability is RunDurabilitySync (empty means it) or
	// RunDurabilityBatched.
	RunDurability string `yaml:"run_durability"`
	// SecretsKey is the base64 of the 32-byte key project secrets are
	// sealed with; empty means the key file in DataDir, generated on the
	// first start. Every agent of a cluster needs the same key.
	SecretsKey string `yaml:"secrets_key"`
	// Projects are rules an administrator sets for some projects, by
	// project name; a project not listed has none.
	Projects map[string]ProjectConfig `yaml:"projects"`
	// LogFormat is LogFormatText (empty means it) or LogFormatJSON.
	LogFormat string `yaml:"log_format"`
	// LogLevel is the least level logged: debug, info (empty means it),
	// warn or error.
	LogLevel string `yaml:"log_level"`

	// generatedID is the AgentID Defaults made up; a single agent keeps it
	// in its data dir and uses the kept one on later starts (keepAgentID).
	generatedID string
}

// EgressConfig is the agent's side of fetch: what every project is denied
// and the bounds of each call.
type EgressConfig struct {
	// Deny are address ranges (CIDR or IP) no project may reach, whatever
	// its egress lists; empty means link-local (169.254.0.0/16, the cloud
	// metadata address among them, and fe80::/10).
	Deny []string `yaml:"deny"`
	// CAFiles are PEM files of CA certificates trusted besides the system's.
	CAFiles []string `yaml:"ca_files"`
	// MaxBodyBytes bounds a response body; 0 means 10 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxRedirects bounds the redirects followed; 0 means 5, -1 none.
	MaxRedirects int `yaml:"max_redirects"`
}

// ProjectConfig is what the agent imposes on one project.
type ProjectConfig struct {
	// Destinations, when any is given, confine the project: its listeners
	// (checked at deploy) and its scripts' SendMessage calls may use only
	// the destinations that match one of these patterns, in which "*"
	// matches any characters (package destpattern). Empty means
	// unconfined. Dead-letter and retry copies are the broker's own and
	// are not confined.
	Destinations []string `yaml:"destinations"`
}

// RunRetention bounds run history.
type RunRetention struct {
	MaxRuns int      `yaml:"max_runs"`
	MaxAge  Duration `yaml:"max_age"`
}

// Connection is a STOMP broker connection.
type Connection struct {
	// URL is stomp://[user:pass@]host:port (stomp+ssl:// for TLS).
	URL string `yaml:"url"`
	// Host is the STOMP virtual host header ("/" for RabbitMQ); default "/".
	Host      string   `yaml:"host"`
	Login     string   `yaml:"login"`
	Passcode  string   `yaml:"passcode"`
	HeartBeat Duration `yaml:"heart_beat"`
	// TLS turns TLS on (as a stomp+ssl:// URL does); the broker's
	// certificate is checked against the system's CAs, or TLSCAFile's.
	TLS         bool `yaml:"tls"`
	TLSInsecure bool `yaml:"tls_insecure"`
	// TLSCAFile is a PEM file of the CA certificates to trust instead of
	// the system's (a broker with a private CA).
	TLSCAFile string `yaml:"tls_ca_file"`
	// TLSCertFile and TLSKeyFile are a PEM client certificate and its key,
	// for brokers that require one (mutual TLS).
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// TLSServerName is the name the broker's certificate must carry;
	// default: the URL's host.
	TLSServerName string `yaml:"tls_server_name"`
}

// tlsConfig returns the TLS configuration of c, whose URL parsed as u; nil
// for a plain TCP connection. It reads the certificate files, so a missing
// or malformed one is an error here, when the agent starts.
func (c Connection) tlsConfig(u BrokerURL) (*tls.Config, error) {
	if !u.TLS && !c.TLS {
		for _, f := range []struct{ key, v string }{
			{"tls_ca_file", c.TLSCAFile}, {"tls_cert_file", c.TLSCertFile}, {"tls_key_file", c.TLSKeyFile}, {"tls_server_name", c.TLSServerName},
		} {
			if f.v != "" {
				return nil, fmt.Errorf("%s is set but TLS is off: use a stomp+ssl:// url or tls: true", f.key)
			}
		}
		if c.TLSInsecure {
			return nil, errors.New("tls_insecure is set but TLS is off: use a stomp+ssl:// url or tls: true")
		}
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.TLSServerName,
		InsecureSkipVerify: c.TLSInsecure, //nolint:gosec // the operator's explicit choice
	}
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls_ca_file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls_ca_file %s: no PEM certificate in it", c.TLSCAFile)
		}
	}
	switch {
	case c.TLSCertFile != "" && c.TLSKeyFile != "":
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls_cert_file/tls_key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case c.TLSCertFile != "" || c.TLSKeyFile != "":
		return nil, errors.New("tls_cert_file and tls_key_file go together: set both or neither")
	}
	return cfg, nil
}

// BrokerUser is one user of the embedded broker (broker_users): login,
// passcode (plain or a bcrypt hash "$2…"), and the destination patterns it
// may read (SUBSCRIBE) and write (SEND), '*' matching any characters.
type BrokerUser = broker.User

// Run durability settings.
const (
	// RunDurabilitySync: a webhook answers, and a listener delivery
	// commits, once its runs are on disk (group commit: one fsync for the
	// runs that finish together). Nothing answered is lost in a crash.
	RunDurabilitySync = "sync"
	// RunDurabilityBatched: answers and commits go at once; runs are
	// written every 200 ms, so a crash loses up to the last 200 ms of them.
	RunDurabilityBatched = "batched"
)

// Log formats (log_format).
const (
	LogFormatText = "text"
	LogFormatJSON = "json"
)

// logLevels are the values of log_level.
var logLevels = map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}

// NewLogger returns a logger writing to w in format (log_format: text or
// json; empty means text) the records of level and above (log_level:
// debug, info, warn or error; empty means info). An unknown value is an
// error naming the key and the values it takes.
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	lvl := slog.LevelInfo
	if level != "" {
		var ok bool
		if lvl, ok = logLevels[level]; !ok {
			return nil, fmt.Errorf("log_level must be debug, info, warn or error, got %q", level)
		}
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "", LogFormatText:
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case LogFormatJSON:
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log_format must be %s or %s, got %q", LogFormatText, LogFormatJSON, format)
}

// Duration reads "10s" style values.
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// Defaults is the configuration `opsrunner serve` runs with when given none.
func Defaults() Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "agent"
	}
	id := host + "-" + randomSuffix()
	return Config{
		generatedID:        id,
		HTTPAddr:           "127.0.0.1:8080",
		DataDir:            "./data",
		EmbeddedBrokerAddr: "127.0.0.1:61613",
		ClusterSize:        1,
		AgentID:            id,
		Workers:            runtime.NumCPU(),
		MaxInflight:        defaultMaxInflight,
		MaxBodyBytes:       1 << 20,
		MaxBundleBytes:     10 << 20,
		ShutdownTimeout:    Duration(30 * time.Second),
	}
}

// EnvVars maps each OPSRUNNER_* variable to the field it sets.
var envVars = []struct {
	name string
	set  func(c *Config, v string) error
}{
	{"OPSRUNNER_HTTP_ADDR", func(c *Config, v string) error { c.HTTPAddr = v; return nil }},
	{"OPSRUNNER_ADVERTISE_ADDR", func(c *Config, v string) error { c.AdvertiseAddr = v; return nil }},
	{"OPSRUNNER_DATA_DIR", func(c *Config, v string) error { c.DataDir = v; return nil }},
	{"OPSRUNNER_EMBEDDED_BROKER_ADDR", func(c *Config, v string) error { c.EmbeddedBrokerAddr = v; return nil }},
	{"OPSRUNNER_BROKER_MAX_FRAME_BYTES", intSetter(func(c *Config, n int) { c.BrokerMaxFrameBytes = n })},
	{"OPSRUNNER_BROKER_WS_ADDR", func(c *Config, v string) error { c.BrokerWSAddr = v; return nil }},
	{"OPSRUNNER_BROKER_MAX_PENDING_BYTES", intSetter(func(c *Config, n int) { c.BrokerMaxPendingBytes = n })},
	{"OPSRUNNER_BROKER_MEMORY_LIMIT", intSetter(func(c *Config, n int) { c.BrokerMemoryLimit = n })},
	{"OPSRUNNER_BROKER_DEAD_LETTER_EXPIRED", boolSetter(func(c *Config, b bool) { c.BrokerDeadLetterExpired = b })},
	// broker_users as YAML, e.g. [{login: app, passcode: "$2a$…", read: ["*"], write: ["*"]}]
	{"OPSRUNNER_BROKER_USERS", func(c *Config, v string) (err error) { c.BrokerUsers, err = broker.ParseUsers([]byte(v)); return err }},
	{"OPSRUNNER_BROKER_USERS_FILE", func(c *Config, v string) error { c.BrokerUsersFile = v; return nil }},
	{"OPSRUNNER_BROKER_MAX_CONNECTIONS_PER_IP", intSetter(func(c *Config, n int) { c.BrokerMaxConnectionsPerIP = n })},
	{"OPSRUNNER_BROKER_TLS_ADDR", func(c *Config, v string) error { c.BrokerTLSAddr = v; return nil }},
	{"OPSRUNNER_BROKER_URL", func(c *Config, v string) error { c.BrokerURL = v; return nil }},
	{"OPSRUNNER_BROKER_TLS_CA_FILE", func(c *Config, v string) error { c.BrokerTLSCAFile = v; return nil }},
	{"OPSRUNNER_BROKER_TLS_CERT_FILE", func(c *Config, v string) error { c.BrokerTLSCertFile = v; return nil }},
	{"OPSRUNNER_BROKER_TLS_KEY_FILE", func(c *Config, v string) error { c.BrokerTLSKeyFile = v; return nil }},
	{"OPSRUNNER_REDIS_URL", func(c *Config, v string) error { c.RedisURL = v; return nil }},
	{"OPSRUNNER_CLUSTER_SIZE", intSetter(func(c *Config, n int) { c.ClusterSize = n })},
	{"OPSRUNNER_AGENT_ID", func(c *Config, v string) error { c.AgentID = v; return nil }},
	{"OPSRUNNER_WORKERS", intSetter(func(c *Config, n int) { c.Workers = n })},
	{"OPSRUNNER_MAX_INFLIGHT", intSetter(func(c *Config, n int) { c.MaxInflight = n })},
	{"OPSRUNNER_EGRESS_DENY", func(c *Config, v string) error { c.Egress.Deny = splitList(v); return nil }},
	{"OPSRUNNER_EGRESS_CA_FILES", func(c *Config, v string) error { c.Egress.CAFiles = splitList(v); return nil }},
	{"OPSRUNNER_EGRESS_MAX_BODY_BYTES", intSetter(func(c *Config, n int) { c.Egress.MaxBodyBytes = int64(n) })},
	{"OPSRUNNER_EGRESS_MAX_REDIRECTS", intSetter(func(c *Config, n int) { c.Egress.MaxRedirects = n })},
	{"OPSRUNNER_RUN_DURABILITY", func(c *Config, v string) error { c.RunDurability = v; return nil }},
	{"OPSRUNNER_SECRETS_KEY", func(c *Config, v string) error { c.SecretsKey = v; return nil }},
	{"OPSRUNNER_TOKENS", func(c *Config, v string) error { c.Tokens = adminTokens(splitList(v)); return nil }},
	{"OPSRUNNER_METRICS_TOKEN", func(c *Config, v string) error { c.MetricsToken = v; return nil }},
	{"OPSRUNNER_TLS_CERT_FILE", func(c *Config, v string) error { c.TLSCertFile = v; return nil }},
	{"OPSRUNNER_TLS_KEY_FILE", func(c *Config, v string) error { c.TLSKeyFile = v; return nil }},
	{"OPSRUNNER_LOG_FORMAT", func(c *Config, v string) error { c.LogFormat = v; return nil }},
	{"OPSRUNNER_LOG_LEVEL", func(c *Config, v string) error { c.LogLevel = v; return nil }},
}

// splitList reads a comma-separated variable.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func intSetter(set func(*Config, int)) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("not a number: %q", v)
		}
		set(c, n)
		return nil
	}
}

func boolSetter(set func(*Config, bool)) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("not true or false: %q", v)
		}
		set(c, b)
		return nil
	}
}

// defaultMaxInflight is max_inflight's default: runs in progress, most of
// them waiting for I/O, per agent.
const defaultMaxInflight = 1000

// Load returns Defaults overridden by the YAML file at path (if non-empty)
// and then by OPSRUNNER_* variables read through getenv.
func Load(path string, getenv func(string) string) (Config, error) {
	cfg := Defaults()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("read config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
	}
	for _, ev := range envVars {
		if v := getenv(ev.name); v != "" {
			if err := ev.set(&cfg, v); err != nil {
				return cfg, fmt.Errorf("%s: %w", ev.name, err)
			}
		}
	}
	return cfg, nil
}

// Validate checks the configuration and fills derived defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.HTTPAddr == "" {
		errs = append(errs, errors.New("http_addr is empty"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir is empty"))
	}
	if c.Workers <= 0 {
		c.Workers = runtime.NumCPU()
	}
	if c.MaxInflight <= 0 {
		c.MaxInflight = defaultMaxInflight
	}
	c.MaxInflight = max(c.MaxInflight, c.Workers) // it counts the runs executing too
	if c.ClusterSize <= 0 {
		errs = append(errs, fmt.Errorf("cluster_size must be at least 1, got %d", c.ClusterSize))
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxBundleBytes <= 0 {
		c.MaxBundleBytes = 10 << 20
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = Duration(30 * time.Second)
	}
	if c.AgentID == "" {
		errs = append(errs, errors.New("agent_id is empty"))
	}
	switch c.RunDurability {
	case "":
		c.RunDurability = RunDurabilitySync
	case RunDurabilitySync, RunDurabilityBatched:
	default:
		errs = append(errs, fmt.Errorf("run_durability must be %s or %s, got %q", RunDurabilitySync, RunDurabilityBatched, c.RunDurability))
	}
	if c.SecretsKey != "" {
		if _, err := secrets.ParseKey(c.SecretsKey); err != nil {
			errs = append(errs, fmt.Errorf("secrets_key: %w", err))
		}
	}
	if _, err := NewLogger(io.Discard, c.LogFormat, c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.validateServing()...)
	if c.RedisURL != "" {
		if _, err := url.Parse(c.RedisURL); err != nil {
			errs = append(errs, fmt.Errorf("redis_url: %w", err))
		}
	}
	errs = append(errs, c.validateProjects()...)
	errs = append(errs, c.validateBrokerUsers()...)
	errs = append(errs, c.validateConnections()...)
	return errors.Join(errs...)
}

// validateConnections checks the broker connections and derives the
// default one from broker_url (and its broker_tls_* files) or the embedded
// broker's address when connections does not name one.
func (c *Config) validateConnections() []error {
	var errs []error
	if c.Connections == nil {
		c.Connections = map[string]Connection{}
	}
	_, hasDefault := c.Connections["default"]
	brokerTLS := c.BrokerTLSCAFile != "" || c.BrokerTLSCertFile != "" || c.BrokerTLSKeyFile != ""
	switch {
	case c.EmbeddedBroker() && c.BrokerTLSAddr != "":
		// the files are the embedded broker's TLS listener's (validateBrokerTLS)
	case brokerTLS && hasDefault:
		errs = append(errs, errors.New("broker_tls_* files apply to the default connection broker_url makes; with a default connection in connections, give its tls_* keys there"))
	case brokerTLS && c.BrokerURL == "":
		errs = append(errs, errors.New("broker_tls_* files are set but broker_url is not, nor broker_tls_addr (then broker_tls_cert_file and broker_tls_key_file are the embedded broker's TLS listener's)"))
	}
	if !hasDefault {
		switch {
		case c.BrokerURL != "":
			c.Connections["default"] = Connection{URL: c.BrokerURL,
				TLSCAFile: c.BrokerTLSCAFile, TLSCertFile: c.BrokerTLSCertFile, TLSKeyFile: c.BrokerTLSKeyFile}
		case c.EmbeddedBrokerAddr != "":
			c.Connections["default"] = Connection{URL: "stomp://" + c.EmbeddedBrokerAddr}
		}
	}
	for name, conn := range c.Connections {
		u, err := ParseBrokerURL(conn.URL)
		if err == nil {
			_, err = conn.tlsConfig(u)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("connection %s: %w", name, err))
		}
	}
	return errs
}

// validateProjects checks the projects section: project names and their
// destination patterns.
func (c *Config) validateProjects() []error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(c.Projects)) {
		if err := scripts.ValidProjectName(name); err != nil {
			errs = append(errs, fmt.Errorf("projects: %w", err))
		}
		for i, p := range c.Projects[name].Destinations {
			if err := destpattern.Valid(p); err != nil {
				errs = append(errs, fmt.Errorf("projects.%s.destinations[%d]: %w", name, i, err))
			}
		}
	}
	return errs
}

// validateBrokerUsers checks broker_users and the embedded broker's
// bounds, and refuses an embedded broker without users on an address
// other machines reach.
func (c *Config) validateBrokerUsers() []error {
	var errs []error
	for _, n := range []struct {
		key string
		v   int
	}{
		{"broker_max_frame_bytes", c.BrokerMaxFrameBytes},
		{"broker_max_pending_bytes", c.BrokerMaxPendingBytes},
		{"broker_memory_limit", c.BrokerMemoryLimit},
		{"broker_max_connections_per_ip", c.BrokerMaxConnectionsPerIP},
	} {
		if n.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %d", n.key, n.v))
		}
	}
	if err := broker.CheckUsers(c.BrokerUsers); err != nil {
		errs = append(errs, fmt.Errorf("broker_users: %w", err))
	}
	if !c.EmbeddedBroker() {
		if len(c.BrokerUsers) > 0 || c.BrokerUsersFile != "" {
			errs = append(errs, errors.New("broker_users and broker_users_file are the embedded broker's users, and no embedded broker runs (broker_url is set or embedded_broker_addr is empty)"))
		}
	} else if err := c.checkBrokerListener("embedded_broker_addr", c.EmbeddedBrokerAddr); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.validateBrokerWS()...)
	return append(errs, c.validateBrokerTLS()...)
}

// hasBrokerUsers reports whether the embedded broker has users
// (broker_users or broker_users_file), so that it is not open.
func (c *Config) hasBrokerUsers() bool { return len(c.BrokerUsers) > 0 || c.BrokerUsersFile != "" }

// checkBrokerListener refuses an embedded broker listener, the key's
// address, that is not on loopback while the broker has no users.
func (c *Config) checkBrokerListener(key, addr string) error {
	if c.hasBrokerUsers() || broker.IsLoopback(addr) {
		return nil
	}
	return fmt.Errorf("%s %s is not a loopback address and broker_users is empty (no broker_users_file either): anyone who reaches it could read and send every message; configure broker_users or bind it to 127.0.0.1", key, addr)
}

// validateBrokerWS checks broker_ws_addr: it needs the embedded broker,
// and, like embedded_broker_addr, users unless it is a loopback address.
func (c *Config) validateBrokerWS() []error {
	switch {
	case c.BrokerWSAddr == "":
		return nil
	case !c.EmbeddedBroker():
		return []error{errors.New("broker_ws_addr serves the embedded broker over WebSocket, and no embedded broker runs (broker_url is set or embedded_broker_addr is empty)")}
	}
	if err := c.checkBrokerListener("broker_ws_addr", c.BrokerWSAddr); err != nil {
		return []error{err}
	}
	return nil
}

// validateBrokerTLS checks broker_tls_addr: it needs the embedded broker,
// a certificate and key file, and, like embedded_broker_addr, users
// unless it is a loopback address.
func (c *Config) validateBrokerTLS() []error {
	switch {
	case c.BrokerTLSAddr == "":
		return nil
	case !c.EmbeddedBroker():
		return []error{errors.New("broker_tls_addr serves the embedded broker over TLS, and no embedded broker runs (broker_url is set or embedded_broker_addr is empty)")}
	case c.BrokerTLSCertFile == "" || c.BrokerTLSKeyFile == "":
		return []error{errors.New("broker_tls_addr needs broker_tls_cert_file and broker_tls_key_file: the certificate and key of the embedded broker's TLS listener")}
	case c.BrokerTLSCAFile != "":
		return []error{errors.New("broker_tls_ca_file applies to the connection broker_url makes; the embedded broker's TLS listener does not ask clients for certificates")}
	}
	if err := c.checkBrokerListener("broker_tls_addr", c.BrokerTLSAddr); err != nil {
		return []error{err}
	}
	return nil
}

// EmbeddedBroker reports whether this agent starts the embedded broker.
func (c *Config) EmbeddedBroker() bool { return c.BrokerURL == "" && c.EmbeddedBrokerAddr != "" }

// BrokerURL is a parsed stomp:// URL.
type BrokerURL struct {
	Addr     string
	Login    string
	Passcode string
	TLS      bool
}

// ParseBrokerURL parses stomp://[user:pass@]host:port (or stomp+ssl://, ssl://).
func ParseBrokerURL(raw string) (BrokerURL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return BrokerURL{}, fmt.Errorf("broker url: %w", err)
	}
	var b BrokerURL
	switch u.Scheme {
	case "stomp", "tcp":
	case "stomp+ssl", "ssl", "stomps":
		b.TLS = true
	default:
		return b, fmt.Errorf("broker url %q: scheme must be stomp:// or stomp+ssl://", raw)
	}
	if u.Host == "" || u.Port() == "" {
		return b, fmt.Errorf("broker url %q: needs host:port", raw)
	}
	b.Addr = u.Host
	if u.User != nil {
		b.Login = u.User.Username()
		b.Passcode, _ = u.User.Password()
	}
	return b, nil
}

func randomSuffix() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
