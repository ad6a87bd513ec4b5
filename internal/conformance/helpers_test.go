package conformance

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/opsrunner/opsrunner/internal/brokercaps"
	"github.com/opsrunner/opsrunner/internal/testenv"
)

const (
	recvTimeout = 10 * time.Second        // a message that must come
	quiet       = 1500 * time.Millisecond // how long "nothing comes" is watched
)

// env is one broker under test with its claimed capabilities.
type env struct {
	b    *testenv.Broker
	caps brokercaps.Capabilities
}

// client is a go-stomp connection whose TCP connection the test can drop.
type client struct {
	*stomp.Conn
	nc net.Conn
}

// drop closes the TCP connection without DISCONNECT, like a crashed agent.
func (c *client) drop() { _ = c.nc.Close() }

// dial connects to the broker; the connection is dropped at test end.
func (e env) dial(t testing.TB, extra ...func(*stomp.Conn) error) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", e.b.Addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", e.b.Addr, err)
	}
	opts := append(e.b.DialOptions(),
		stomp.ConnOpt.DisconnectReceiptTimeout(5*time.Second),
		stomp.ConnOpt.UnsubscribeReceiptTimeout(5*time.Second),
		testenv.QuietLogs())
	conn, err := stomp.Connect(nc, append(opts, extra...)...)
	if err != nil {
		nc.Close()
		t.Fatalf("connect to %s: %v", e.b.Kind, err)
	}
	c := &client{Conn: conn, nc: nc}
	t.Cleanup(c.drop)
	return c
}

// name returns a destination name unique to this test and run.
func name(t testing.TB, kind string) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	slug := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '-'
	}, t.Name())
	if len(slug) > 60 {
		slug = slug[len(slug)-60:]
	}
	return "/" + kind + "/conf." + slug + "." + hex.EncodeToString(r[:])
}

func subscribe(t testing.TB, c *client, dest string, ack stomp.AckMode, opts ...func(*frame.Frame) error) *stomp.Subscription {
	t.Helper()
	sub, err := c.Subscribe(dest, ack, opts...)
	if err != nil {
		t.Fatalf("subscribe %s: %v", dest, err)
	}
	// SUBSCRIBE has no receipt in go-stomp; a SEND with a receipt on the same
	// connection is processed after it, so the subscription is in place
	// (topics only deliver to subscriptions that exist).
	if err := c.Send("/queue/conformance.sync", "text/plain", nil, stomp.SendOpt.Receipt); err != nil {
		t.Fatalf("sync after subscribe: %v", err)
	}
	return sub
}

// send sends persistent text messages with a receipt, so they are on the
// broker when send returns. Extra headers are k, v pairs.
func send(t testing.TB, c *client, dest string, bodies []string, kv ...string) {
	t.Helper()
	for _, body := range bodies {
		opts := []func(*frame.Frame) error{stomp.SendOpt.Receipt, stomp.SendOpt.Header("persistent", "true")}
		for i := 0; i+1 < len(kv); i += 2 {
			opts = append(opts, stomp.SendOpt.Header(kv[i], kv[i+1]))
		}
		if err := c.Send(dest, "text/plain", []byte(body), opts...); err != nil {
			t.Fatalf("send to %s: %v", dest, err)
		}
	}
}

// receive waits for the next message on sub.
func receive(t testing.TB, sub *stomp.Subscription) *stomp.Message {
	t.Helper()
	select {
	case m, ok := <-sub.C:
		if !ok {
			t.Fatalf("subscription %s closed", sub.Destination())
		}
		if m.Err != nil {
			t.Fatalf("receive on %s: %v", sub.Destination(), m.Err)
		}
		return m
	case <-time.After(recvTimeout):
		t.Fatalf("no message on %s within %s", sub.Destination(), recvTimeout)
	}
	return nil
}

// receiveBodies receives n messages and returns their bodies in order.
func receiveBodies(t testing.TB, sub *stomp.Subscription, n int) ([]string, []*stomp.Message) {
	t.Helper()
	var bodies []string
	var msgs []*stomp.Message
	for range n {
		m := receive(t, sub)
		bodies = append(bodies, string(m.Body))
		msgs = append(msgs, m)
	}
	return bodies, msgs
}

// expectNone asserts nothing arrives on sub for the quiet period.
func expectNone(t testing.TB, sub *stomp.Subscription, why string) {
	t.Helper()
	select {
	case m, ok := <-sub.C:
		if !ok || m.Err != nil {
			t.Fatalf("%s: subscription ended: %v", why, m)
		}
		t.Fatalf("%s: got message %q (headers %v)", why, m.Body, headers(m))
	case <-time.After(quiet):
	}
}

func ack(t testing.TB, c *client, m *stomp.Message) {
	t.Helper()
	if err := c.Ack(m); err != nil {
		t.Fatalf("ack: %v", err)
	}
}

func headers(m *stomp.Message) map[string]string {
	h := map[string]string{}
	for i := range m.Header.Len() {
		k, v := m.Header.GetAt(i)
		h[k] = v
	}
	return h
}

// checkRedelivery asserts what the capabilities say about a redelivered
// message: redelivered:true, the same message-id, the delivery count + 1.
func (e env) checkRedelivery(t testing.TB, first, again *stomp.Message) {
	t.Helper()
	if string(first.Body) != string(again.Body) {
		t.Fatalf("redelivered %q, want %q", again.Body, first.Body)
	}
	if got := again.Header.Get("redelivered") == "true"; got != e.caps.RedeliveredHeader {
		t.Errorf("redelivered:true on redelivery = %v, capability RedeliveredHeader = %v (headers %v)", got, e.caps.RedeliveredHeader, headers(again))
	}
	if first.Header.Get("redelivered") == "true" {
		t.Errorf("first delivery carries redelivered:true (headers %v)", headers(first))
	}
	id1, id2 := first.Header.Get("message-id"), again.Header.Get("message-id")
	if same := id1 == id2; same != e.caps.StableMessageID {
		t.Errorf("message-id %q then %q: stable = %v, capability StableMessageID = %v", id1, id2, same, e.caps.StableMessageID)
	}
	if h := e.caps.DeliveryCountHeader; h != "" {
		n1, err1 := strconv.Atoi(first.Header.Get(h))
		n2, err2 := strconv.Atoi(again.Header.Get(h))
		if err1 != nil || err2 != nil || n1 != e.caps.FirstDeliveryCount || n2 != n1+1 {
			t.Errorf("%s: first %q, redelivery %q; want %d then %d", h, first.Header.Get(h), again.Header.Get(h), e.caps.FirstDeliveryCount, e.caps.FirstDeliveryCount+1)
		}
	}
}

// stompHeader is a SUBSCRIBE option setting one header.
func stompHeader(k, v string) func(*frame.Frame) error {
	return func(f *frame.Frame) error { f.Header.Set(k, v); return nil }
}
