package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/broker"
	"github.com/spf13/cobra"
)

func newServe(getenv func(string) string) *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run an agent: API, webhooks, listeners (embedded defaults)",
		Long: `Run an opsrunner agent. With no configuration it runs everything embedded:
data in ./data, HTTP on 127.0.0.1:8080, the embedded STOMP broker on
127.0.0.1:61613, no Redis.

Configuration comes from a YAML file (--config or OPSRUNNER_CONFIG), then
OPSRUNNER_* environment variables, then flags, each overriding the one before.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := serveConfig(cmd, configPath, getenv)
			if err != nil {
				return err
			}
			log, err := agent.NewLogger(os.Stderr, cfg.LogFormat, cfg.LogLevel)
			if err != nil {
				return err
			}
			agent.TuneGC(cfg.MemoryLimit)
			a, err := agent.New(cfg, log)
			if err != nil {
				return err
			}
			return a.Serve(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "YAML config `FILE` (env OPSRUNNER_CONFIG)")
	f.String("http-addr", "", "API and webhooks listen `ADDR` (env OPSRUNNER_HTTP_ADDR; default 127.0.0.1:8080)")
	f.String("data-dir", "", "data `DIR`: store and embedded broker journal (env OPSRUNNER_DATA_DIR; default ./data)")
	f.String("embedded-broker-addr", "", "embedded broker listen `ADDR` (env OPSRUNNER_EMBEDDED_BROKER_ADDR; default 127.0.0.1:61613)")
	f.String("broker-url", "", "the default connection's broker `URL`, stomp://[user:pass@]host:port; no embedded broker then (env OPSRUNNER_BROKER_URL)")
	f.String("redis-url", "", "join the cluster of the Redis at `URL`, redis://host:port/db (env OPSRUNNER_REDIS_URL)")
	f.Int("cluster-size", 0, "expected agents `N`; listening needs N/2+1 (env OPSRUNNER_CLUSTER_SIZE; default 1)")
	f.String("agent-id", "", "this agent's `ID` (env OPSRUNNER_AGENT_ID; default hostname + random suffix)")
	f.Int("workers", 0, "`N` runs executing JavaScript at once (env OPSRUNNER_WORKERS; default number of cores)")
	f.Int("max-inflight", 0, "`N` runs in progress, waiting ones included (env OPSRUNNER_MAX_INFLIGHT; default 1000)")
	f.String("tls-cert-file", "", "PEM certificate `FILE` (chain after it): serve HTTPS, reloaded when the file changes (env OPSRUNNER_TLS_CERT_FILE)")
	f.String("tls-key-file", "", "PEM key `FILE` of --tls-cert-file (env OPSRUNNER_TLS_KEY_FILE)")
	addLogFlags(cmd, " (env OPSRUNNER_LOG_FORMAT; default text)", " (env OPSRUNNER_LOG_LEVEL; default info)")
	return cmd
}

// addLogFlags adds --log-format, --log-level and --log-json (an alias of
// --log-format json) to cmd; envFormat and envLevel end their help.
func addLogFlags(cmd *cobra.Command, envFormat, envLevel string) {
	f := cmd.Flags()
	f.String("log-format", "", "log `FORMAT`: text or json"+envFormat)
	f.String("log-level", "", "least `LEVEL` logged: debug, info, warn or error"+envLevel)
	f.Bool("log-json", false, "log JSON lines: --log-format json")
}

// logFlags returns the log format and level cmd's flags set, "" for
// those not set; --log-json is --log-format json.
func logFlags(cmd *cobra.Command) (format, level string, err error) {
	f := cmd.Flags()
	format, _ = f.GetString("log-format")
	level, _ = f.GetString("log-level")
	if json, _ := f.GetBool("log-json"); json {
		if f.Changed("log-format") && format != agent.LogFormatJSON {
			return "", "", fmt.Errorf("--log-json is --log-format json, and --log-format is %q: give one of them", format)
		}
		format = agent.LogFormatJSON
	}
	return format, level, nil
}

// serveConfig is the configuration serve runs with: defaults, then the
// YAML file (configPath, else OPSRUNNER_CONFIG), the environment, and the
// flags set on cmd, each overriding the one before.
func serveConfig(cmd *cobra.Command, configPath string, getenv func(string) string) (agent.Config, error) {
	if configPath == "" {
		configPath = getenv("OPSRUNNER_CONFIG")
	}
	cfg, err := agent.Load(configPath, getenv)
	if err != nil {
		return cfg, err
	}
	if err := applyServeFlags(cmd, &cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// applyServeFlags overrides cfg with the flags the user set.
func applyServeFlags(cmd *cobra.Command, cfg *agent.Config) error {
	f := cmd.Flags()
	str := map[string]*string{
		"http-addr":            &cfg.HTTPAddr,
		"data-dir":             &cfg.DataDir,
		"embedded-broker-addr": &cfg.EmbeddedBrokerAddr,
		"broker-url":           &cfg.BrokerURL,
		"redis-url":            &cfg.RedisURL,
		"agent-id":             &cfg.AgentID,
		"tls-cert-file":        &cfg.TLSCertFile,
		"tls-key-file":         &cfg.TLSKeyFile,
	}
	for name, dst := range str {
		if f.Changed(name) {
			v, _ := f.GetString(name)
			*dst = v
		}
	}
	format, level, err := logFlags(cmd)
	if err != nil {
		return err
	}
	if format != "" {
		cfg.LogFormat = format
	}
	if level != "" {
		cfg.LogLevel = level
	}
	ints := map[string]*int{"cluster-size": &cfg.ClusterSize, "workers": &cfg.Workers, "max-inflight": &cfg.MaxInflight}
	for name, dst := range ints {
		if f.Changed(name) {
			v, _ := f.GetInt(name)
			if v <= 0 {
				return fmt.Errorf("--%s must be at least 1", name)
			}
			*dst = v
		}
	}
	return nil
}

func newBroker(getenv func(string) string) *cobra.Command {
	var addr, wsAddr, dataDir string
	var tlsAddr, tlsCert, tlsKey string
	var cfg broker.Config
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run the embedded STOMP 1.2 broker on its own",
		Long: `Run the embedded STOMP broker on its own. Without --users any login is
accepted, and the broker listens only on loopback addresses.

The users file is a YAML list, as the agent's broker_users, read again
within a second of each change (a version that does not load is logged
and the users stay as they were):
  - login: app
    passcode: "$2a$10$..."        # plain, or a bcrypt hash
    read: ["/queue/orders.*"]     # SUBSCRIBE; '*' matches any characters
    write: ["/queue/orders.in"]   # SEND
  - login: ops
    passcode: "$2a$10$..."
    admin: true                   # read and write everything`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, level, err := logFlags(cmd)
			if err != nil {
				return err
			}
			format, level = orEnv(format, getenv("OPSRUNNER_LOG_FORMAT")), orEnv(level, getenv("OPSRUNNER_LOG_LEVEL"))
			log, err := agent.NewLogger(os.Stderr, format, level)
			if err != nil {
				return fmt.Errorf("--log-format/--log-level: %w", err)
			}
			if err := checkBrokerFlags(cfg.UsersFile != "", addr, wsAddr, tlsAddr, tlsCert, tlsKey); err != nil {
				return err
			}
			cfg.Addr, cfg.DataDir, cfg.Logger = addr, dataDir, log
			b, err := broker.New(cfg)
			if err != nil {
				return err
			}
			defer b.Close()
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			failed := make(chan error, 2)
			fail := func(err error) { failed <- err; cancel() }
			if wsAddr != "" {
				stop, err := serveBrokerWS(b, wsAddr, log, fail)
				if err != nil {
					return err
				}
				defer stop()
			}
			if tlsAddr != "" {
				stop, err := serveBrokerTLS(ctx, b, tlsAddr, tlsCert, tlsKey, log, fail)
				if err != nil {
					return err
				}
				defer stop()
			}
			log.Info("broker listening", "addr", "stomp://"+addr, "data", dataDir, "users_file", cfg.UsersFile)
			if err := b.ListenAndServe(ctx); err != nil {
				return err
			}
			select {
			case err := <-failed:
				return err
			default:
				return nil
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:61613", "listen `ADDR`")
	f.StringVar(&dataDir, "data-dir", "./data/broker", "journal `DIR` (empty: memory only)")
	f.StringVar(&cfg.UsersFile, "users", "", "YAML `FILE` of the users and their permissions, re-read on change (default: none, any login accepted on loopback only)")
	f.IntVar(&cfg.MaxFrameBytes, "max-frame-bytes", 4<<20, "largest frame accepted, in `BYTES`")
	f.IntVar(&cfg.MaxConnections, "max-connections", 10000, "`N` connections at once")
	f.IntVar(&cfg.MaxConnectionsPerIP, "max-connections-per-ip", 1000, "`N` connections at once from one IP address")
	f.IntVar(&cfg.MaxPendingBytes, "max-pending-bytes", 4<<20, "`BYTES` queued for one connection before delivery to it pauses")
	f.Int64Var(&cfg.MaxMemoryBytes, "max-memory-bytes", 64<<20, "`BYTES` of persistent message bodies held in memory; past it they are read back from disk on delivery (a queue keeps at most 1,000 pending messages in memory, the rest on disk)")
	f.BoolVar(&cfg.DeadLetterExpired, "dead-letter-expired", false, "move expired messages to their dead-letter queue instead of dropping them")
	f.DurationVar(&cfg.ConnectTimeout, "connect-timeout", 10*time.Second, "`DURATION` from TCP accept to the CONNECT frame")
	f.StringVar(&wsAddr, "ws-addr", "", "also serve STOMP over WebSocket at ws://`ADDR`/stomp (empty: off)")
	f.StringVar(&tlsAddr, "tls-addr", "", "also serve STOMP over TLS (stomp+ssl) on `ADDR` (empty: off)")
	f.StringVar(&tlsCert, "tls-cert-file", "", "PEM certificate `FILE` (chain) of the TLS listener, re-read on change")
	f.StringVar(&tlsKey, "tls-key-file", "", "PEM private key `FILE` of the TLS listener, re-read on change")
	addLogFlags(cmd, " (env OPSRUNNER_LOG_FORMAT; default text)", " (env OPSRUNNER_LOG_LEVEL; default info)")
	return cmd
}

// orEnv is flag when set, else the environment's value.
func orEnv(flag, env string) string {
	if flag != "" {
		return flag
	}
	return env
}

// checkBrokerFlags refuses listen addresses other than loopback for a
// broker without users, and a TLS listener without its certificate and
// key (or those without it).
func checkBrokerFlags(users bool, addr, wsAddr, tlsAddr, tlsCert, tlsKey string) error {
	for _, l := range []struct{ flag, addr string }{{"--addr", addr}, {"--ws-addr", wsAddr}, {"--tls-addr", tlsAddr}} {
		if l.addr != "" && !users && !broker.IsLoopback(l.addr) {
			return fmt.Errorf("%s %s is not a loopback address: a broker without --users may only listen on loopback", l.flag, l.addr)
		}
	}
	if (tlsAddr != "") != (tlsCert != "" && tlsKey != "") {
		return errors.New("--tls-addr needs --tls-cert-file and --tls-key-file, and they need --tls-addr")
	}
	return nil
}

// serveBrokerTLS serves b over TLS on addr (agent.ListenBrokerTLS), in
// the background, until the returned stop is called or the broker
// closes; a failure to serve is given to failed.
func serveBrokerTLS(ctx context.Context, b *broker.Broker, addr, certFile, keyFile string, log *slog.Logger, failed func(error)) (stop func(), err error) {
	ln, err := agent.ListenBrokerTLS(addr, certFile, keyFile, log)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := b.Serve(ctx, ln); err != nil {
			failed(fmt.Errorf("tls: %w", err))
		}
	}()
	log.Info("broker TLS listening", "addr", "stomp+ssl://"+ln.Addr().String())
	return func() { _ = b.Close(); <-done }, nil
}

// serveBrokerWS serves b's WebSocket handler at /stomp on addr, in the
// background, until the returned stop is called; a failure to serve is
// given to failed. Without users, the broker's handler refuses clients
// that did not come through a loopback address.
func serveBrokerWS(b *broker.Broker, addr string, log *slog.Logger, failed func(error)) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("websocket listen %s: %w", addr, err)
	}
	srv := agent.NewBrokerWSServer(b, log)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			failed(fmt.Errorf("websocket: %w", err))
		}
	}()
	log.Info("broker websocket listening", "addr", "ws://"+ln.Addr().String()+agent.BrokerWSPath)
	return func() { _ = srv.Close(); <-done }, nil
}
