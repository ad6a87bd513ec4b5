package triggers

import (
	"encoding/json"
	"iter"
	"strconv"
	"strings"
)

// Headers opsrunner adds to the copies it publishes (retry, dead letter).
const (
	HeaderAttempt             = "opsrunner-attempt"
	HeaderMessageID           = "opsrunner-message-id"
	HeaderError               = "opsrunner-error"
	HeaderAttempts            = "opsrunner-attempts"
	HeaderOriginalDestination = "opsrunner-original-destination"
	HeaderOriginalMessageID   = "opsrunner-original-message-id"
	HeaderAgent               = "opsrunner-agent"
	HeaderFailedAt            = "opsrunner-failed-at"
	// HeaderAckTimeout overrides the listener's ack timeout per message (seconds).
	HeaderAckTimeout = "JBXAcknowledgmentTimeout"
)

// notProperties are the headers that STOMP, a broker or the JMS provider
// puts on a MESSAGE frame: an event's properties leave them out.
var notProperties = map[string]bool{
	// STOMP's own and the JMS-like ones, which JMS_MSG_* names show.
	"message-id": true, "subscription": true, "ack": true, "destination": true,
	"content-length": true, "content-type": true, "redelivered": true, "timestamp": true,
	"expires": true, "priority": true, "persistent": true, "correlation-id": true,
	"reply-to": true, "type": true, "receipt": true, "transaction": true,
	"original-destination": true, "message-type": true,
	// The embedded broker counts deliveries.
	"delivery-count": true,
	// ActiveMQ's dead-letter bookkeeping.
	"originalExpiration": true, "dlqDeliveryFailureCause": true,
	// The JMSX names the JMS provider sets; JMSXGroupID and JMSXGroupSeq,
	// set by producers, stay properties.
	"JMSXDeliveryCount": true, "JMSXUserID": true, "JMSXAppID": true, "JMSXProducerTXID": true,
	"JMSXConsumerTXID": true, "JMSXRcvTimestamp": true, "JMSXState": true,
}

// Header name prefixes that are never properties: opsrunner's bookkeeping
// on the copies it publishes (attempt, operations still to run, dead-letter
// cause...) and the x- names RabbitMQ reserves for itself (x-death,
// x-delivery-count...).
const (
	opsrunnerPrefix = "opsrunner-"
	rabbitMQPrefix  = "x-"
)

// isProperty reports whether the header name is a producer's own property,
// which an event shows as JMS_PROP_<name>.
func isProperty(name string) bool {
	return !notProperties[name] &&
		!strings.HasPrefix(name, opsrunnerPrefix) &&
		!strings.HasPrefix(name, rabbitMQPrefix)
}

// causeHeaders are carried by dead-lettered copies; Replay strips them.
var causeHeaders = map[string]bool{
	HeaderError: true, HeaderAttempts: true, HeaderOriginalDestination: true,
	HeaderOriginalMessageID: true, HeaderAgent: true, HeaderFailedAt: true,
	HeaderAttempt: true, HeaderMessageID: true,
}

// copyHeaders returns the headers a republished copy of a message keeps:
// every producer header plus the JMS-like STOMP ones (content-type,
// priority, expires, correlation-id, reply-to, type, persistent), without
// broker bookkeeping and without the headers named in drop.
func copyHeaders(h iter.Seq2[string, string], drop map[string]bool) map[string]string {
	out := make(map[string]string)
	for k, v := range h {
		switch k {
		case "message-id", "subscription", "ack", "destination", "content-length",
			"redelivered", "timestamp", "receipt", "transaction", "delivery-count":
			continue
		}
		if drop[k] {
			continue
		}
		out[k] = v
	}
	return out
}

// EventFor returns the script event of a delivery (or of anything that
// carries a message), as docs/writing-operations.md describes it:
// {messageId, destination, body, properties, headers, redelivered,
// deliveryCount}. body is a json.RawMessage when the content-type says
// JSON: the runtime parses it, and gives the text when it does not parse.
// Otherwise body is text. properties
// holds JMS_PROP_<key> for each header the producer set (none that STOMP,
// the broker or opsrunner adds) and the JMS_MSG_* names of CloverDX, all
// strings; headers holds every header of the frame, as received. properties and headers are func() any values that
// build their maps when called: the runtime builds them only for a script
// that reads them. It does not block and is safe for concurrent use.
func EventFor(d interface{ Message() Message }) map[string]any {
	m := d.Message()
	id := m.ID
	if x, ok := d.(interface{ ID() string }); ok {
		id = x.ID()
	}
	h := m.Headers
	var body any
	if mentionsJSON(h.Get("content-type")) {
		// Parsed by the runtime, which falls back to the text when the
		// bytes are not JSON: checking them here first doubled the work.
		body = json.RawMessage(m.Body)
	} else {
		body = string(m.Body)
	}
	redelivered := m.Attempt > 1 || h.Get("redelivered") == "true"
	return map[string]any{
		"messageId":     id,
		"destination":   m.Destination,
		"body":          body,
		"properties":    func() any { return messageProperties(m, id, redelivered) },
		"headers":       func() any { return stringsToAny(h) },
		"redelivered":   redelivered,
		"deliveryCount": m.Attempt,
	}
}

// mentionsJSON reports whether a message's content type says JSON
// (application/json, text/json, application/vnd.x+json; any case, any
// parameters). Producers are less careful than HTTP clients: any mention
// counts.
func mentionsJSON(contentType string) bool {
	for i := 0; i+4 <= len(contentType); i++ {
		if strings.EqualFold(contentType[i:i+4], "json") {
			return true
		}
	}
	return false
}

// messageProperties is an event's properties: JMS_PROP_<key> for each
// producer header (isProperty) and CloverDX's JMS_MSG_* names.
func messageProperties(m Message, id string, redelivered bool) map[string]any {
	h := m.Headers
	props := make(map[string]any, h.Len()+10)
	for k, v := range h.All() {
		if isProperty(k) {
			props["JMS_PROP_"+k] = v
		}
	}
	mode := "NON_PERSISTENT"
	if h.Get("persistent") == "true" {
		mode = "PERSISTENT"
	}
	priority := h.Get("priority")
	if priority == "" {
		priority = "4"
	}
	expires := h.Get("expires")
	if expires == "" {
		expires = "0"
	}
	props["JMS_MSG_CORRELATIONID"] = h.Get("correlation-id")
	props["JMS_MSG_DESTINATION"] = m.Destination
	props["JMS_MSG_MESSAGEID"] = id
	props["JMS_MSG_REPLYTO"] = h.Get("reply-to")
	props["JMS_MSG_TYPE"] = h.Get("type")
	props["JMS_MSG_DELIVERYMODE"] = mode
	props["JMS_MSG_EXPIRATION"] = expires
	props["JMS_MSG_PRIORITY"] = priority
	props["JMS_MSG_REDELIVERED"] = strconv.FormatBool(redelivered)
	props["JMS_MSG_TIMESTAMP"] = h.Get("timestamp")
	return props
}

func stringsToAny(h Headers) map[string]any {
	out := make(map[string]any, h.Len())
	for k, v := range h.All() {
		out[k] = v
	}
	return out
}
