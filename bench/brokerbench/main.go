// Command brokerbench compares the embedded broker with ActiveMQ 5.17 on the
// same machine in the same run: it sends N persistent messages of S bytes to
// a fresh queue (the last SEND asks for a receipt, so the leg ends when the
// broker has taken them all), then consumes them with client-individual ACK
// (ending with a receipt after the last ACK), and prints messages per second
// for each leg and the ratio embedded/ActiveMQ. Brokers are started by
// internal/testenv and stopped at exit. Run by `make bench`.
//
// With -backlog it measures instead an `opsrunner broker` child (-bin, or
// built from this module) as a black box with one queue holding large
// backlogs (backlog.go): memory, disk, restart times and the drain rate.
// With -baseline-bin it compares the small-backlog send and consume rates
// of -bin with those of another build (backlog_compare.go).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/opsrunner/opsrunner/internal/brokercaps"
	"github.com/opsrunner/opsrunner/internal/testenv"
)

type result struct {
	kind          string
	send, consume float64 // messages per second
	err           error
}

func main() {
	n := flag.Int("n", 20000, "messages per leg")
	size := flag.Int("size", 200, "body bytes")
	prefetch := flag.Int("prefetch", 1000, "consumer prefetch")
	kinds := flag.String("brokers", "embedded,activemq", "brokers to measure, comma-separated (embedded, embedded-users: with broker users and a bcrypt login, activemq, rabbitmq)")
	backlog := flag.String("backlog", "", "queued messages at each checkpoint after 0, comma-separated (e.g. 100000,1000000,3000000): measure one queue's backlog instead of comparing brokers")
	bin := flag.String("bin", "", "opsrunner binary for -backlog and -baseline-bin (default: built from ./cmd/opsrunner)")
	baselineBin := flag.String("baseline-bin", "", "opsrunner binary to compare -bin with: small-backlog send and consume rates over -rounds alternated rounds")
	rounds := flag.Int("rounds", 6, "rounds of -baseline-bin")
	dataDir := flag.String("dir", "", "folder for the brokers' data of -backlog and -baseline-bin (default: the system's temporary folder)")
	producers := flag.Int("producers", 4, "-backlog: producer connections filling the queue")
	consumers := flag.Int("consumers", 2, "-backlog: consumer connections draining it")
	settle := flag.Duration("settle", 5*time.Second, "-backlog: wait after the drain and after the restart that follows it, for compaction")
	flag.Parse()
	if *backlog != "" || *baselineBin != "" {
		levels, err := parseLevels(*backlog)
		if err == nil {
			err = runBinaries(levels, *bin, *baselineBin, *dataDir, flagSet("size"), backlogConfig{
				size: *size, producers: *producers, consumers: *consumers, prefetch: *prefetch, settle: *settle,
			}, compareConfig{rounds: *rounds, n: *n, size: *size, prefetch: *prefetch})
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "brokerbench:", err)
			os.Exit(1)
		}
		return
	}

	starters := map[string]func() (*testenv.Broker, error){
		testenv.KindEmbedded: testenv.StartEmbedded,
		"embedded-users":     testenv.StartEmbeddedWithUsers,
		testenv.KindActiveMQ: testenv.StartActiveMQ,
		testenv.KindRabbitMQ: testenv.StartRabbitMQ,
	}
	var results []result
	for _, kind := range strings.Split(*kinds, ",") {
		start, ok := starters[kind]
		if !ok {
			fmt.Fprintf(os.Stderr, "brokerbench: unknown broker %q\n", kind)
			testenv.StopAll()
			os.Exit(2)
		}
		r := result{kind: kind}
		b, err := start()
		if err == nil {
			dial := func() (*stomp.Conn, error) { return b.Dial() }
			r.send, r.consume, err = measure(dial, b.Kind, *n, *size, *prefetch)
			b.Stop()
		}
		r.err = err
		results = append(results, r)
	}
	testenv.StopAll()

	fmt.Printf("brokerbench: %d persistent %d-byte messages, client-individual ack, prefetch %d\n", *n, *size, *prefetch)
	fmt.Printf("%-10s %14s %14s\n", "broker", "send msg/s", "consume msg/s")
	failed := false
	for _, r := range results {
		if r.err != nil {
			failed = true
			fmt.Printf("%-10s error: %v\n", r.kind, r.err)
			continue
		}
		fmt.Printf("%-10s %14.0f %14.0f\n", r.kind, r.send, r.consume)
	}
	if len(results) >= 2 && results[0].err == nil && results[1].err == nil {
		a, b := results[0], results[1]
		fmt.Printf("ratio %s/%s: send %.2fx, consume %.2fx\n", a.kind, b.kind, a.send/b.send, a.consume/b.consume)
	}
	if failed {
		os.Exit(1)
	}
}

// measure runs both legs on a fresh queue of a broker of kind that dial
// connects to and returns messages per second.
func measure(dial func() (*stomp.Conn, error), kind string, n, size, prefetch int) (sendRate, consumeRate float64, err error) {
	caps := brokercaps.For(kind)
	queue := fmt.Sprintf("/queue/brokerbench.%d", time.Now().UnixNano())
	body := bytes.Repeat([]byte("x"), size)

	prod, err := dial()
	if err != nil {
		return 0, 0, fmt.Errorf("connect producer: %w", err)
	}
	defer prod.MustDisconnect()
	t0 := time.Now()
	for i := range n {
		opts := []func(*frame.Frame) error{stomp.SendOpt.Header("persistent", "true")}
		if i == n-1 {
			opts = append(opts, stomp.SendOpt.Receipt)
		}
		if err := prod.Send(queue, "application/octet-stream", body, opts...); err != nil {
			return 0, 0, fmt.Errorf("send %d: %w", i, err)
		}
	}
	sendRate = float64(n) / time.Since(t0).Seconds()

	cons, err := dial()
	if err != nil {
		return 0, 0, fmt.Errorf("connect consumer: %w", err)
	}
	defer cons.MustDisconnect()
	t1 := time.Now()
	sub, err := cons.Subscribe(queue, stomp.AckClientIndividual, caps.PrefetchOption(prefetch))
	if err != nil {
		return 0, 0, fmt.Errorf("subscribe: %w", err)
	}
	// go-stomp's connection loop blocks handing a MESSAGE to a full
	// subscription channel, and then cannot write ACKs: a goroutine that
	// both reads sub.C and ACKs deadlocks under load. Drain sub.C into a
	// buffer that the broker's prefetch bound keeps from filling.
	msgs := make(chan *stomp.Message, prefetch+32)
	go func() { // owner: measure; ends when the subscription closes at disconnect
		for m := range sub.C {
			msgs <- m
		}
		close(msgs)
	}()
	for i := range n {
		select {
		case m, ok := <-msgs:
			if !ok {
				return 0, 0, fmt.Errorf("receive %d: subscription closed", i)
			}
			if m.Err != nil {
				return 0, 0, fmt.Errorf("receive %d: %w", i, m.Err)
			}
			if err := cons.Ack(m); err != nil {
				return 0, 0, fmt.Errorf("ack %d: %w", i, err)
			}
		case <-time.After(30 * time.Second):
			return 0, 0, fmt.Errorf("consumer stalled after %d of %d messages", i, n)
		}
	}
	// The broker handles a connection's frames in order: this receipt comes
	// after every ACK above has been applied.
	if err := cons.Send(queue+".done", "text/plain", nil, stomp.SendOpt.Receipt); err != nil {
		return 0, 0, fmt.Errorf("final receipt: %w", err)
	}
	consumeRate = float64(n) / time.Since(t1).Seconds()
	return sendRate, consumeRate, nil
}
