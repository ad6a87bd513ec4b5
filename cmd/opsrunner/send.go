package main

import (
	"context"
	"fmt"
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
	cmd := &cobra.Command{
		Use:   "send DESTINATION",
		Short: "Send test messages to any STOMP broker",
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
			if brokerURL == "" {
				brokerURL = getenv("OPSRUNNER_BROKER_URL")
			}
			if brokerURL == "" {
				brokerURL = "stomp://127.0.0.1:61613"
			}
			// The environment's TLS files are defaults for a TLS broker
			// only: a plain --broker given over a TLS environment stays plain.
			if u, err := agent.ParseBrokerURL(brokerURL); err == nil && u.TLS {
				for _, f := range []struct {
					v   *string
					env string
				}{{&tlsCA, "OPSRUNNER_BROKER_TLS_CA_FILE"}, {&tlsCert, "OPSRUNNER_BROKER_TLS_CERT_FILE"}, {&tlsKey, "OPSRUNNER_BROKER_TLS_KEY_FILE"}} {
					if *f.v == "" {
						*f.v = getenv(f.env)
					}
				}
			}
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
			var sendOpts []func(*frame.Frame) error
			for _, kv := range headers {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return fmt.Errorf("--header wants k=v, got %q", kv)
				}
				sendOpts = append(sendOpts, stomp.SendOpt.Header(k, v))
			}
			if persistent {
				sendOpts = append(sendOpts, stomp.SendOpt.Header("persistent", "true"))
			}
			start := time.Now()
			last := start
			for i := 1; i <= count; i++ {
				o := sendOpts
				if i == count {
					o = append(append([]func(*frame.Frame) error{}, sendOpts...), stomp.SendOpt.Receipt)
				}
				if err := conn.Send(dest, contentType, payload, o...); err != nil {
					return fmt.Errorf("send message %d: %w", i, err)
				}
				if count >= 1000 && time.Since(last) > time.Second {
					last = time.Now()
					fmt.Fprintf(cmd.ErrOrStderr(), "\rsent %d/%d", i, count)
				}
			}
			el := time.Since(start)
			if count >= 1000 {
				fmt.Fprintln(cmd.ErrOrStderr())
			}
			fmt.Fprintf(cmd.OutOrStdout(), "sent %d message(s) to %s in %s (%.0f msg/s)\n", count, dest, el.Round(time.Millisecond), float64(count)/el.Seconds())
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&count, "count", 1, "number of messages")
	f.StringArrayVar(&headers, "header", nil, "message header k=v (repeatable)")
	f.StringVar(&body, "body", "", "message body: text, or @file")
	f.StringVar(&contentType, "content-type", "text/plain", "content-type of the body")
	f.BoolVar(&persistent, "persistent", false, "send persistent messages")
	f.StringVar(&brokerURL, "broker", "", "stomp://[user:pass@]host:port, or stomp+ssl:// for TLS (default OPSRUNNER_BROKER_URL or stomp://127.0.0.1:61613)")
	f.StringVar(&tlsCA, "tls-ca-file", "", "PEM CAs to trust instead of the system's (default for a stomp+ssl:// broker: OPSRUNNER_BROKER_TLS_CA_FILE)")
	f.StringVar(&tlsCert, "tls-cert-file", "", "PEM client certificate (default for a stomp+ssl:// broker: OPSRUNNER_BROKER_TLS_CERT_FILE)")
	f.StringVar(&tlsKey, "tls-key-file", "", "PEM key of the client certificate (default for a stomp+ssl:// broker: OPSRUNNER_BROKER_TLS_KEY_FILE)")
	f.StringVar(&host, "host", "", "STOMP virtual host (\"/\" for RabbitMQ)")
	return cmd
}
