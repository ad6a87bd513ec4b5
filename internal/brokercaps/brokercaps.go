// Package brokercaps records, in one table, how each STOMP broker opsrunner
// talks to differs from the others (embedded, ActiveMQ 5.x, RabbitMQ), so
// listener code asks a Capabilities value instead of testing broker names.
// Every entry is proven against the real broker by internal/conformance.
package brokercaps

import (
	"strconv"
	"strings"

	"github.com/go-stomp/stomp/v3/frame"
)

// Broker kinds.
const (
	Embedded = "embedded"
	ActiveMQ = "activemq"
	RabbitMQ = "rabbitmq"
	Unknown  = "unknown"
)

// Capabilities describes one broker's STOMP behaviour. The zero value (and
// For(Unknown)) assumes nothing: no selectors, no requeue on NACK, no
// headers beyond STOMP 1.2's.
type Capabilities struct {
	// Kind is Embedded, ActiveMQ, RabbitMQ or Unknown.
	Kind string
	// Selectors: the SUBSCRIBE `selector` header (JMS SQL-92) is honoured.
	// When false the header is ignored and every message is delivered.
	Selectors bool
	// NackRequeues: NACK gives the message back to the same destination for
	// redelivery. When false, NackDeadLetter says where it goes instead.
	NackRequeues bool
	// NackDeadLetter is the destination a NACKed message lands in when
	// NackRequeues is false ("" when NACK requeues).
	NackDeadLetter string
	// RequeueByDisconnect: closing the connection (or losing it) gives
	// every unacknowledged message back to its queue. True for all three;
	// it is how a listener gives a message back where NACK does not.
	RequeueByDisconnect bool
	// StableMessageID: message-id is unchanged on redelivery, so it can be
	// a dedup key. When false a producer header must carry the dedup key.
	StableMessageID bool
	// DeliveryCountHeader names the MESSAGE header carrying the delivery
	// count ("" when the broker sends none).
	DeliveryCountHeader string
	// FirstDeliveryCount is the DeliveryCountHeader value on a first delivery
	// (1 for the embedded broker).
	FirstDeliveryCount int
	// RedeliveredHeader: a redelivered message carries redelivered:true.
	RedeliveredHeader bool
	// TransactionalAck: ACKs and SENDs inside BEGIN/COMMIT are applied
	// together on COMMIT, discarded on ABORT and on connection loss.
	TransactionalAck bool
	// DurableCommit: once a COMMIT's RECEIPT arrives, its persistent sends
	// and its ACKs are on disk and survive a broker crash (kill -9). RabbitMQ
	// answers COMMIT before its store syncs, so a crash right after can
	// lose the commit's sends.
	DurableCommit bool
	// DurableTopics says, for people, how a durable topic subscription is
	// asked for; DurableConnectOptions and DurableSubscribeOptions do it.
	DurableTopics string
	// DurableNeedsClientID: CONNECT must carry a `client-id` header for a
	// durable subscription to be found again on reconnection.
	DurableNeedsClientID bool
	// PrefetchHeader is the SUBSCRIBE header limiting unacknowledged
	// messages in flight: "activemq.prefetchSize" or "prefetch-count".
	PrefetchHeader string
	// PersistentHeader: SEND with persistent:true makes a message survive a
	// broker restart (on RabbitMQ, to the durable queues /queue/ makes).
	PersistentHeader bool
}

var table = map[string]Capabilities{
	Embedded: {
		Kind:                Embedded,
		Selectors:           true,
		NackRequeues:        true,
		RequeueByDisconnect: true,
		StableMessageID:     true,
		DeliveryCountHeader: "delivery-count",
		FirstDeliveryCount:  1,
		RedeliveredHeader:   true,
		TransactionalAck:    true,
		DurableCommit:       true,
		DurableTopics:       "SUBSCRIBE durable:true with a stable id (and auto-delete:false); client-id on CONNECT",
		PrefetchHeader:      "prefetch-count",
		PersistentHeader:    true,
	},
	ActiveMQ: {
		Kind:                 ActiveMQ,
		Selectors:            true,
		NackRequeues:         false,
		NackDeadLetter:       "/queue/ActiveMQ.DLQ",
		RequeueByDisconnect:  true,
		StableMessageID:      true,
		RedeliveredHeader:    true,
		TransactionalAck:     true,
		DurableCommit:        true,
		DurableTopics:        "CONNECT client-id; SUBSCRIBE activemq.subscriptionName",
		DurableNeedsClientID: true,
		PrefetchHeader:       "activemq.prefetchSize",
		PersistentHeader:     true,
	},
	RabbitMQ: {
		Kind:                RabbitMQ,
		Selectors:           false,
		NackRequeues:        true,
		RequeueByDisconnect: true,
		StableMessageID:     false,
		RedeliveredHeader:   true,
		TransactionalAck:    true,
		DurableTopics:       "SUBSCRIBE durable:true, auto-delete:false and a stable id (the id names the queue)",
		PrefetchHeader:      "prefetch-count",
		PersistentHeader:    true,
	},
}

// For returns the capabilities of kind (Embedded, ActiveMQ, RabbitMQ); any
// other kind gets the conservative Unknown entry. Goroutine-safe.
func For(kind string) Capabilities {
	if c, ok := table[kind]; ok {
		return c
	}
	return Capabilities{Kind: Unknown, RequeueByDisconnect: true}
}

// Detect maps the `server` header of a CONNECTED frame to a kind:
// "ActiveMQ/5.17.2" → ActiveMQ, "RabbitMQ/3.10.8" → RabbitMQ,
// "opsrunner/…" → Embedded, anything else (or "") → Unknown.
func Detect(serverHeader string) string {
	name, _, _ := strings.Cut(strings.TrimSpace(serverHeader), "/")
	switch strings.ToLower(name) {
	case "activemq":
		return ActiveMQ
	case "rabbitmq":
		return RabbitMQ
	case "opsrunner":
		return Embedded
	}
	return Unknown
}

// DurableConnectHeaders returns the CONNECT headers a durable subscriber
// needs (client-id where the broker ties durable subscriptions to it; it is
// sent to every kind but Unknown, where it is harmless). Use each pair with
// stomp.ConnOpt.Header. clientID must be unique among live connections.
func (c Capabilities) DurableConnectHeaders(clientID string) map[string]string {
	if c.Kind == Unknown || clientID == "" {
		return nil
	}
	return map[string]string{"client-id": clientID}
}

// DurableSubscribeOptions returns the SUBSCRIBE options that make a durable
// topic subscription called name, found again when a connection with the
// same client-id (see DurableConnectHeaders) subscribes with the same name.
// The subscription id is set to name, so one connection holds one durable
// subscription per name. Leaving without UNSUBSCRIBE keeps it.
func (c Capabilities) DurableSubscribeOptions(name, clientID string) []func(*frame.Frame) error {
	set := func(k, v string) func(*frame.Frame) error {
		return func(f *frame.Frame) error { f.Header.Set(k, v); return nil }
	}
	switch c.Kind {
	case ActiveMQ:
		return []func(*frame.Frame) error{set("id", name), set("activemq.subscriptionName", name)}
	case RabbitMQ, Embedded:
		return []func(*frame.Frame) error{set("id", name), set("durable", "true"), set("auto-delete", "false")}
	}
	return nil
}

// PrefetchOption returns the SUBSCRIBE option limiting unacknowledged
// messages in flight to n (n ≥ 1), in this broker's header.
func (c Capabilities) PrefetchOption(n int) func(*frame.Frame) error {
	h := c.PrefetchHeader
	return func(f *frame.Frame) error {
		if h != "" {
			f.Header.Set(h, strconv.Itoa(n))
		}
		return nil
	}
}
