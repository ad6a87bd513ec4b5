package triggers_test

import (
	"context"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/opsrunner/opsrunner/internal/stompc"
	"github.com/opsrunner/opsrunner/internal/testenv"
	"github.com/opsrunner/opsrunner/triggers"
)

// jmsMsgNames are the JMS_MSG_* properties every message event has.
var jmsMsgNames = []string{
	"JMS_MSG_CORRELATIONID", "JMS_MSG_DESTINATION", "JMS_MSG_MESSAGEID", "JMS_MSG_REPLYTO", "JMS_MSG_TYPE",
	"JMS_MSG_DELIVERYMODE", "JMS_MSG_EXPIRATION", "JMS_MSG_PRIORITY", "JMS_MSG_REDELIVERED", "JMS_MSG_TIMESTAMP",
}

// eventMessage is a bare message source for EventFor: what a listener's
// delivery carries, without a broker connection to settle on.
type eventMessage struct{ m triggers.Message }

func (e eventMessage) Message() triggers.Message { return e.m }

// eventProperties calls EventFor on m and returns the event's properties.
func eventProperties(t *testing.T, m triggers.Message) map[string]any {
	t.Helper()
	build, ok := triggers.EventFor(eventMessage{m})["properties"].(func() any)
	if !ok {
		t.Fatal("event properties is not a func() any")
	}
	props, ok := build().(map[string]any)
	if !ok {
		t.Fatalf("event properties are a %T", build())
	}
	return props
}

// wantPropertyNames is the sorted set of the JMS_MSG_* names plus
// JMS_PROP_<name> for each producer header name.
func wantPropertyNames(producer ...string) []string {
	want := slices.Clone(jmsMsgNames)
	for _, p := range producer {
		want = append(want, "JMS_PROP_"+p)
	}
	slices.Sort(want)
	return want
}

// JMS_PROP_* holds the producer's own headers only: what STOMP, a broker
// (the embedded broker, ActiveMQ, RabbitMQ) or opsrunner itself puts on a
// MESSAGE frame is not a property, though event.headers keeps it.
func TestEventPropertiesAreTheProducersOwn(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		headers triggers.Headers
	}{
		{"STOMP", triggers.Headers{"destination", "/queue/q", "message-id", "m-1", "subscription", "1", "ack", "7",
			"content-length", "3", "content-type", "text/plain", "receipt", "3", "transaction", "tx-1"}},
		{"JMS headers", triggers.Headers{"expires", "0", "priority", "4", "timestamp", "1700000000000",
			"persistent", "true", "correlation-id", "c-1", "reply-to", "/queue/r", "type", "t", "redelivered", "false"}},
		{"embedded broker", triggers.Headers{"delivery-count", "2", "redelivered", "true"}},
		{"ActiveMQ", triggers.Headers{"original-destination", "/queue/q", "originalExpiration", "0",
			"dlqDeliveryFailureCause", "java.lang.Throwable: poison", "JMSXDeliveryCount", "2", "JMSXUserID", "admin"}},
		{"RabbitMQ", triggers.Headers{"x-delivery-count", "1", "x-death", "count=1", "x-first-death-queue", "q"}},
		{"opsrunner", triggers.Headers{"opsrunner-attempt", "2", "opsrunner-message-id", "m-0",
			"opsrunner-operations", "B", "opsrunner-not-before", "1700000000000", "opsrunner-original-destination", "/queue/q",
			"opsrunner-original-message-id", "m-0", "opsrunner-error", "boom", "opsrunner-attempts", "3",
			"opsrunner-agent", "a1", "opsrunner-failed-at", "2024-01-01T00:00:00Z"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := append(triggers.Headers{"color", "red"}, tt.headers...)
			props := eventProperties(t, triggers.Message{ID: "m-1", Destination: "/queue/q", Headers: h, Attempt: 1})
			if got, want := slices.Sorted(maps.Keys(props)), wantPropertyNames("color"); !slices.Equal(got, want) {
				t.Errorf("property names\n got %q\nwant %q", got, want)
			}
			if props["JMS_PROP_color"] != "red" {
				t.Errorf("JMS_PROP_color = %v, want red", props["JMS_PROP_color"])
			}
		})
	}
}

// Producer headers that resemble broker ones stay properties: the JMSX
// group names a producer sets, opsrunner's per-message ack timeout, and
// names that only share a prefix with the excluded ones.
func TestEventPropertiesKeepProducerNames(t *testing.T) {
	t.Parallel()
	producer := []string{"JMSXGroupID", "JMSXGroupSeq", triggers.HeaderAckTimeout, "opsrunner", "xray", "Type", "tenant-id"}
	var h triggers.Headers
	for _, p := range producer {
		h = append(h, p, "v")
	}
	props := eventProperties(t, triggers.Message{ID: "m-1", Destination: "/queue/q", Headers: h, Attempt: 1})
	if got, want := slices.Sorted(maps.Keys(props)), wantPropertyNames(producer...); !slices.Equal(got, want) {
		t.Errorf("property names\n got %q\nwant %q", got, want)
	}
}

// event.headers is every header of the frame, as received.
func TestEventHeadersAreRaw(t *testing.T) {
	t.Parallel()
	h := triggers.Headers{"color", "red", "delivery-count", "2", "opsrunner-attempt", "2", "x-death", "d", "message-id", "m-1"}
	build, _ := triggers.EventFor(eventMessage{triggers.Message{ID: "m-1", Headers: h, Attempt: 2}})["headers"].(func() any)
	if build == nil {
		t.Fatal("event headers is not a func() any")
	}
	got, _ := build().(map[string]any)
	want := map[string]any{"color": "red", "delivery-count": "2", "opsrunner-attempt": "2", "x-death": "d", "message-id": "m-1"}
	if !maps.Equal(got, want) {
		t.Errorf("headers = %v, want %v", got, want)
	}
}

// eventBrokerStarters are the brokers the property test runs against.
var eventBrokerStarters = []struct {
	kind  string
	start func(testing.TB) *testenv.Broker
}{
	{testenv.KindEmbedded, testenv.Embedded},
	{testenv.KindActiveMQ, testenv.ActiveMQ},
	{testenv.KindRabbitMQ, testenv.RabbitMQ},
}

// On each broker, a message sent with the user header color: red (and the
// JMS-like STOMP headers a SendMessage may set) has JMS_PROP_color and
// the JMS_MSG_* names as its only properties: on its first delivery, on the
// broker's redelivery after a disconnect, and as opsrunner's retry copy.
func TestEventPropertiesOnEachBroker(t *testing.T) {
	for _, bs := range eventBrokerStarters {
		t.Run(bs.kind, func(t *testing.T) {
			t.Parallel()
			b := bs.start(t)
			dest := "/queue/" + eventDest("props")
			eventSend(t, b, dest, map[string]string{"color": "red", "correlation-id": "c-1", "reply-to": "/queue/r",
				"type": "t", "priority": "7", "persistent": "true"})
			want := wantPropertyNames("color")
			for _, step := range []string{"first delivery", "redelivery", "retry copy"} {
				if step == "retry copy" {
					eventSend(t, b, dest, map[string]string{"color": "red", triggers.HeaderAttempt: "2",
						triggers.HeaderMessageID: "m-0", "opsrunner-operations": "B"})
				}
				m := eventReceive(t, b, dest, step != "first delivery")
				if step == "redelivery" && m.Headers.Get("redelivered") != "true" {
					t.Fatalf("redelivery: the broker did not redeliver the message: %q", m.Headers)
				}
				props := eventProperties(t, m)
				if got := slices.Sorted(maps.Keys(props)); !slices.Equal(got, want) {
					t.Errorf("%s: property names\n got %q\nwant %q\nframe %q", step, got, want, m.Headers)
				}
				if props["JMS_PROP_color"] != "red" {
					t.Errorf("%s: JMS_PROP_color = %v", step, props["JMS_PROP_color"])
				}
			}
		})
	}
}

// On ActiveMQ, a message it dead-letters itself (NACK) carries only the
// producer's headers as properties, not ActiveMQ's originalExpiration.
func TestEventPropertiesOfActiveMQDeadLetter(t *testing.T) {
	t.Parallel()
	b := testenv.ActiveMQ(t)
	dest, tag := "/queue/"+eventDest("nacked"), eventDest("tag")
	// ActiveMQ dead-letters persistent messages only (by default).
	eventSend(t, b, dest, map[string]string{"color": tag, "persistent": "true"})
	c, err := b.Dial(testenv.QuietLogs())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Disconnect()
	sub, err := c.Subscribe(dest, stomp.AckClientIndividual)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	select {
	case m := <-sub.C:
		if m.Err != nil {
			t.Fatalf("receive: %v", m.Err)
		}
		if err := c.Nack(m); err != nil {
			t.Fatalf("nack: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no message")
	}
	// ActiveMQ.DLQ is shared: the selector picks this test's message.
	m := eventNext(t, b, "/queue/ActiveMQ.DLQ", true, map[string]string{"selector": "color = '" + tag + "'"})
	if got, want := slices.Sorted(maps.Keys(eventProperties(t, m))), wantPropertyNames("color"); !slices.Equal(got, want) {
		t.Errorf("property names\n got %q\nwant %q\nframe %q", got, want, m.Headers)
	}
}

var eventSeq atomic.Int64

// eventDest returns a destination-safe name unique in this test binary.
func eventDest(prefix string) string {
	return prefix + "." + strconv.FormatInt(time.Now().UnixNano()%1e9, 10) + "." + strconv.FormatInt(eventSeq.Add(1), 10)
}

// eventSend publishes one text message to dest with headers, and waits for
// the broker's receipt.
func eventSend(t *testing.T, b *testenv.Broker, dest string, headers map[string]string) {
	t.Helper()
	c, err := b.Dial(testenv.QuietLogs())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Disconnect()
	opts := []func(*frame.Frame) error{stomp.SendOpt.Receipt}
	for k, v := range headers {
		opts = append(opts, stomp.SendOpt.Header(k, v))
	}
	if err := c.Send(dest, "text/plain", []byte("body"), opts...); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// eventReceive reads the next message of dest as a listener consumer does
// (stompc, client-individual acks, prefetch 1) and returns it as the
// listener's Message. With ack it acknowledges it; without, it drops the
// connection so that the broker redelivers it.
func eventReceive(t *testing.T, b *testenv.Broker, dest string, ack bool) triggers.Message {
	t.Helper()
	return eventNext(t, b, dest, ack, map[string]string{"activemq.prefetchSize": "1", "prefetch-count": "1"})
}

// eventNext is eventReceive with the given SUBSCRIBE headers.
func eventNext(t *testing.T, b *testenv.Broker, dest string, ack bool, sub map[string]string) triggers.Message {
	t.Helper()
	nc, err := net.DialTimeout("tcp", b.Addr, 10*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if err := nc.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	c, err := stompc.Connect(nc, stompc.Options{Login: b.Login, Passcode: b.Passcode, Host: b.Host})
	if err != nil {
		nc.Close()
		t.Fatalf("connect: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	defer c.StopOn(ctx)()
	err = c.Subscribe(dest, func(f *frame.Frame) error {
		for k, v := range sub {
			f.Header.Set(k, v)
		}
		return nil
	})
	if err != nil {
		c.Close()
		t.Fatalf("subscribe: %v", err)
	}
	raw, err := c.Next()
	if err != nil {
		c.Close()
		t.Fatalf("receive from %s: %v", dest, err)
	}
	if !ack {
		c.Close()
	} else if err := c.Ack(raw); err != nil {
		c.Close()
		t.Fatalf("ack: %v", err)
	} else {
		_ = c.Disconnect()
	}
	h := triggers.HeadersOf(raw.Header)
	return triggers.Message{ID: h.Get("message-id"), Destination: dest, Headers: h, Body: raw.Body, Attempt: 1}
}
