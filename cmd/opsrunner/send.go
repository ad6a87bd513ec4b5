package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/triggers"
	"github.com/spf13/cobra"
)

func newSend(getenv func(string) string) *cobra.Command {
	var count int
	var headers []string
	var body, brokerURL, host, contentType string
	var tlsCA, tlsCert, tlsKey string
	var persistent bool
	var o *output // set below, read when the command runs
	cmd := &cobra.Command{
		Use:   "send DESTINATION",
		Short: "Send test messages to any STOMP broker (by default the agent's)",
		Long: `send sends messages to a STOMP destination. The broker is --broker, else
OPSRUNNER_BROKER_URL, else the one the agent at --server (OPSRUNNER_SERVER)
uses, as its GET /api/v1/info says; with neither set and no agent answering
at the default URL, stomp://127.0.0.1:61613. A broker that needs a login
takes it in the URL (stomp://user:pass@host:port).`,
		Example: `  opsrunner send /queue/orders --body '{"id":1}' --content-type application/json
  opsrunner send /queue/orders --count 10000 --persistent --body @order.json
  opsrunner send /topic/prices --broker stomp://guest:guest@127.0.0.1:61613 --host /`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dest := args[0]
			if !strings.HasPrefix(dest, "/queue/") && !strings.HasPrefix(dest, "/topic/") {
				return fmt.Errorf("destination must start with /queue/ or /topic/, got %q", dest)
			}
			if count < 1 {
				return fmt.Errorf("--count must be at least 1")
			}
			brokerURL, err := findBroker(cmd, getenv, brokerURL)
			if err != nil {
				return err
			}
			tlsFromEnv(getenv, brokerURL, &tlsCA, &tlsCert, &tlsKey)
			cc, err := agent.Connection{URL: brokerURL, Host: host, TLSCAFile: tlsCA, TLSCertFile: tlsCert, TLSKeyFile: tlsKey}.ConnConfig("send")
			if err != nil {
				return fmt.Errorf("broker %s: %w", brokerURL, err)
			}
			payload, err := readData(body)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			conn, err := triggers.Dial(ctx, cc)
			if err != nil {
				return err
			}
			defer conn.Disconnect()
			sendOpts, err := sendHeaders(headers, persistent)
			if err != nil {
				return err
			}
			el, err := sendAll(conn, dest, contentType, payload, sendOpts, count, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			sent := map[string]any{"sent": count, "destination": dest, "seconds": el.Seconds(), "perSecond": float64(count) / el.Seconds()}
			return o.print(cmd, sent, func(w io.Writer) {
				fmt.Fprintf(w, "sent %d message(s) to %s in %s (%.0f msg/s)\n", count, dest, el.Round(time.Millisecond), float64(count)/el.Seconds())
			})
		},
	}
	o = addOutput(cmd)
	f := cmd.Flags()
	f.IntVar(&count, "count", 1, "send `N` messages")
	f.StringArrayVar(&headers, "header", nil, "message header `K=V` (repeatable)")
	f.StringVar(&body, "body", "", "message body: `TEXT`, or @FILE")
	f.StringVar(&contentType, "content-type", "text/plain", "content-type `TYPE` of the body")
	f.BoolVar(&persistent, "persistent", false, "send persistent messages")
	f.StringVar(&brokerURL, "broker", "", "broker `URL`: stomp://[user:pass@]host:port, or stomp+ssl:// for TLS (default OPSRUNNER_BROKER_URL, else the broker of the agent at --server)")
	f.StringVar(&tlsCA, "tls-ca-file", "", "PEM `FILE` of the CAs to trust instead of the system's (default for a stomp+ssl:// broker: OPSRUNNER_BROKER_TLS_CA_FILE)")
	f.StringVar(&tlsCert, "tls-cert-file", "", "PEM `FILE` of a client certificate (default for a stomp+ssl:// broker: OPSRUNNER_BROKER_TLS_CERT_FILE)")
	f.StringVar(&tlsKey, "tls-key-file", "", "PEM `FILE` of the client certificate's key (default for a stomp+ssl:// broker: OPSRUNNER_BROKER_TLS_KEY_FILE)")
	f.StringVar(&host, "host", "", "STOMP virtual `HOST` (\"/\" for RabbitMQ)")
	return cmd
}

// defaultBroker is the broker send dials when nothing names one and no
// agent answers at the default server URL.
const defaultBroker = "stomp://127.0.0.1:61613"

// findBroker is the broker URL send dials: flag, then OPSRUNNER_BROKER_URL,
// then the agent's (GET /api/v1/info). An agent named by --server or
// OPSRUNNER_SERVER must answer; the default one may be absent.
func findBroker(cmd *cobra.Command, getenv func(string) string, flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if env := getenv("OPSRUNNER_BROKER_URL"); env != "" {
		return env, nil
	}
	named := cmd.Flags().Changed("server") || getenv("OPSRUNNER_SERVER") != ""
	c := newClient(cmd)
	var in struct{ BrokerURL string }
	err := c.getJSON(cmd.Context(), "/api/v1/info", &in)
	switch {
	case err != nil && named:
		return "", fmt.Errorf("find the agent's broker (or give --broker): %w", err)
	case err != nil || in.BrokerURL == "":
		return defaultBroker, nil
	}
	u, err := url.Parse(in.BrokerURL)
	if err != nil {
		return "", fmt.Errorf("the agent's broker %q: %w", in.BrokerURL, err)
	}
	u.Host = agentHost(u.Host, c.base)
	fmt.Fprintf(cmd.ErrOrStderr(), "sending to %s, the broker of the agent at %s\n", u, c.base)
	return u.String(), nil
}

// agentHost is addr (host:port) with a host that means "every interface"
// (0.0.0.0, ::, none) replaced by the host of the agent's URL.
func agentHost(addr, agentURL string) string {
	h, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(h); h != "" && (ip == nil || !ip.IsUnspecified()) {
		return addr
	}
	u, err := url.Parse(agentURL)
	if err != nil || u.Hostname() == "" {
		return addr
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// sendAll sends count messages, the last with a receipt so that all are
// known to have reached the broker, and reports progress on a long run.
func sendAll(conn *stomp.Conn, dest, contentType string, payload []byte, opts []func(*frame.Frame) error, count int, progress io.Writer) (time.Duration, error) {
	start := time.Now()
	last := start
	for i := 1; i <= count; i++ {
		o := opts
		if i == count {
			o = append(append([]func(*frame.Frame) error{}, opts...), stomp.SendOpt.Receipt)
		}
		if err := conn.Send(dest, contentType, payload, o...); err != nil {
			return 0, fmt.Errorf("send message %d: %w", i, err)
		}
		if count >= 1000 && time.Since(last) > time.Second {
			last = time.Now()
			fmt.Fprintf(progress, "\rsent %d/%d", i, count)
		}
	}
	el := time.Since(start)
	if count >= 1000 {
		fmt.Fprintln(progress)
	}
	return el, nil
}

// sendHeaders are the send options of --header K=V and --persistent.
func sendHeaders(headers []string, persistent bool) ([]func(*frame.Frame) error, error) {
	var opts []func(*frame.Frame) error
	for _, kv := range headers {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("--header wants k=v, got %q", kv)
		}
		opts = append(opts, stomp.SendOpt.Header(k, v))
	}
	if persistent {
		opts = append(opts, stomp.SendOpt.Header("persistent", "true"))
	}
	return opts, nil
}

// tlsFromEnv fills the TLS files not given as flags from the environment,
// for a TLS broker only: a plain --broker given over a TLS environment
// stays plain.
func tlsFromEnv(getenv func(string) string, brokerURL string, ca, cert, key *string) {
	if u, err := agent.ParseBrokerURL(brokerURL); err != nil || !u.TLS {
		return
	}
	for _, f := range []struct {
		v   *string
		env string
	}{{ca, "OPSRUNNER_BROKER_TLS_CA_FILE"}, {cert, "OPSRUNNER_BROKER_TLS_CERT_FILE"}, {key, "OPSRUNNER_BROKER_TLS_KEY_FILE"}} {
		if *f.v == "" {
			*f.v = getenv(f.env)
		}
	}
}
