// Command brokerbench compares the embedded broker with ActiveMQ 5.17 on the
// same machine in the same run: it sends N persistent messages of S bytes to
// a fresh queue (the last SEND asks for a receipt, so the leg ends when the
// broker has taken them all), then consumes them with client-individual ACK
// (ending with a receipt after the last ACK), and prints messages per second
// for each leg and the ratio embedded/ActiveMQ. Brokers are started by
// internal/testenv and stopped at exit. Run by `make bench`.
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
	flag.Parse()

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
			r.send, r.consume, err = measure(b, *n, *size, *prefetch)
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

// measure runs both legs on a fresh queue and returns messages per second.
func measure(b *testenv.Broker, n, size, prefetch int) (sendRate, consumeRate float64, err error) {
	caps := brokercaps.For(b.Kind)
	queue := fmt.Sprintf("/queue/brokerbench.%d", time.Now().UnixNano())
	body := bytes.Repeat([]byte("x"), size)

	prod, err := b.Dial()
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

	cons, err := b.Dial()
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
