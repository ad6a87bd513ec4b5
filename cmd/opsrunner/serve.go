package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/broker"
	"github.com/spf13/cobra"
)

func newServe(getenv func(string) string) *cobra.Command {
	var configPath string
	var jsonLogs bool
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
			if configPath == "" {
				configPath = getenv("OPSRUNNER_CONFIG")
			}
			cfg, err := agent.Load(configPath, getenv)
			if err != nil {
				return err
			}
			if err := applyServeFlags(cmd, &cfg); err != nil {
				return err
			}
			var h slog.Handler = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})
			if jsonLogs {
				h = slog.NewJSONHandler(os.Stderr, nil)
			}
			log := slog.New(h)
			agent.TuneGC(cfg.MemoryLimit)
			a, err := agent.New(cfg, log)
			if err != nil {
				return err
			}
			return a.Serve(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "YAML config file (env OPSRUNNER_CONFIG)")
	f.String("http-addr", "", "API and webhooks listen address (env OPSRUNNER_HTTP_ADDR; default 127.0.0.1:8080)")
	f.String("data-dir", "", "data directory: store and embedded broker journal (env OPSRUNNER_DATA_DIR; default ./data)")
	f.String("embedded-broker-addr", "", "embedded broker listen address (env OPSRUNNER_EMBEDDED_BROKER_ADDR; default 127.0.0.1:61613)")
	f.String("broker-url", "", "stomp://[user:pass@]host:port of the default connection; no embedded broker then (env OPSRUNNER_BROKER_URL)")
	f.String("redis-url", "", "redis://host:port/db: join that cluster (env OPSRUNNER_REDIS_URL)")
	f.Int("cluster-size", 0, "expected agents N; listening needs N/2+1 (env OPSRUNNER_CLUSTER_SIZE; default 1)")
	f.String("agent-id", "", "this agent's id (env OPSRUNNER_AGENT_ID; default hostname + random suffix)")
	f.Int("workers", 0, "runs executing JavaScript at once (env OPSRUNNER_WORKERS; default number of cores)")
	f.Int("max-inflight", 0, "runs in progress, waiting ones included (env OPSRUNNER_MAX_INFLIGHT; default 1000)")
	f.String("tls-cert-file", "", "PEM certificate (chain after it): serve HTTPS, reloaded when the file changes (env OPSRUNNER_TLS_CERT_FILE)")
	f.String("tls-key-file", "", "PEM key of --tls-cert-file (env OPSRUNNER_TLS_KEY_FILE)")
	f.BoolVar(&jsonLogs, "log-json", false, "log JSON lines instead of text")
	return cmd
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

func newBroker() *cobra.Command {
	var addr, dataDir string
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run the embedded STOMP 1.2 broker on its own",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			b, err := broker.New(broker.Config{Addr: addr, DataDir: dataDir, Logger: log})
			if err != nil {
				return err
			}
			defer b.Close()
			log.Info("broker listening", "addr", "stomp://"+addr, "data", dataDir)
			return b.ListenAndServe(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:61613", "listen address")
	cmd.Flags().StringVar(&dataDir, "data-dir", "./data/broker", "journal directory (empty: memory only)")
	return cmd
}
