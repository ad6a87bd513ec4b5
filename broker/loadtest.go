package broker

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
)

// SendConsumeResult is what SendConsume measured.
type SendConsumeResult struct {
	Messages    int
	Send        time.Duration // until the receipt of the last SEND (all durable)
	Consume     time.Duration // until the receipt of DISCONNECT after the last ACK
	SendRate    float64       // messages per second
	ConsumeRate float64
}

// SendConsume measures any STOMP broker at addr (host:port): it sends n
// persistent 200-byte messages to dest without receipts except on the last,
// then consumes them with ack:client-individual and acknowledges each. It
// blocks until done; the destination should be empty before. Used by the
// benchmark here and by the comparison with ActiveMQ.
func SendConsume(addr, dest string, n int, opts ...func(*stomp.Conn) error) (SendConsumeResult, error) {
	res := SendConsumeResult{Messages: n}
	if n <= 0 {
		return res, errors.New("need at least one message")
	}
	body := []byte(strings.Repeat("m", 200))
	c, err := stomp.Dial("tcp", addr, opts...)
	if err != nil {
		return res, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	start := time.Now()
	for i := range n {
		o := []func(*frame.Frame) error{stomp.SendOpt.Header("persistent", "true")}
		if i == n-1 {
			o = append(o, stomp.SendOpt.Receipt)
		}
		if err := c.Send(dest, "text/plain", body, o...); err != nil {
			_ = c.MustDisconnect()
			return res, fmt.Errorf("sending message %d: %w", i, err)
		}
	}
	res.Send = time.Since(start)
	if err := c.Disconnect(); err != nil {
		return res, fmt.Errorf("disconnecting producer: %w", err)
	}

	c, err = stomp.Dial("tcp", addr, opts...)
	if err != nil {
		return res, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	start = time.Now()
	sub, err := c.Subscribe(dest, stomp.AckClientIndividual,
		stomp.SubscribeOpt.Header("activemq.prefetchSize", "1000"),
		stomp.SubscribeOpt.Header("prefetch-count", "1000"))
	if err != nil {
		_ = c.MustDisconnect()
		return res, fmt.Errorf("subscribing to %s: %w", dest, err)
	}
	// go-stomp's connection loop stops writing while a subscription's
	// channel is full, so an Ack issued from the receiving goroutine can
	// deadlock with a large prefetch: receive and acknowledge separately.
	got := make(chan *stomp.Message, n)
	go func() {
		for m := range sub.C {
			got <- m
		}
	}()
	for i := range n {
		select {
		case m := <-got:
			if m.Err != nil {
				_ = c.MustDisconnect()
				return res, fmt.Errorf("receiving message %d: %w", i, m.Err)
			}
			if err := c.Ack(m); err != nil {
				_ = c.MustDisconnect()
				return res, fmt.Errorf("acknowledging message %d: %w", i, err)
			}
		case <-time.After(30 * time.Second):
			_ = c.MustDisconnect()
			return res, fmt.Errorf("message %d of %d not received within 30s", i, n)
		}
	}
	if err := c.Disconnect(); err != nil {
		return res, fmt.Errorf("disconnecting consumer: %w", err)
	}
	res.Consume = time.Since(start)
	res.SendRate = float64(n) / res.Send.Seconds()
	res.ConsumeRate = float64(n) / res.Consume.Seconds()
	return res, nil
}
