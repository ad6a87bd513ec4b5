//go:build ignore

// Command brokerd runs the embedded broker (package broker) alone, like
// `opsrunner broker --addr A --data-dir D`. The test harness builds it with
// `go build internal/testenv/brokerd_main.go` only while cmd/opsrunner has no
// broker command; it ends on SIGINT/SIGTERM with a clean shutdown.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/opsrunner/opsrunner/broker"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:61613", "STOMP listen address")
	dataDir := flag.String("data-dir", "./data", "journal directory")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b, err := broker.New(broker.Config{Addr: *addr, DataDir: *dataDir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "brokerd:", err)
		os.Exit(1)
	}
	err = b.ListenAndServe(ctx)
	if cerr := b.Close(); err == nil {
		err = cerr
	}
	if err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "brokerd:", err)
		os.Exit(1)
	}
}
