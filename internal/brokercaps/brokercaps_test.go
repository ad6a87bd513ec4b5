package brokercaps_test

import (
	"testing"

	"github.com/go-stomp/stomp/v3/frame"

	"github.com/opsrunner/opsrunner/internal/brokercaps"
)

func TestDetect(t *testing.T) {
	t.Parallel()
	tests := []struct{ server, want string }{
		{"ActiveMQ/5.17.2", brokercaps.ActiveMQ},
		{"RabbitMQ/3.10.8", brokercaps.RabbitMQ},
		{"opsrunner/1", brokercaps.Embedded},
		{"opsrunner/0.1.0-dev", brokercaps.Embedded},
		{"ActiveMQ-Artemis/2.31.0 ActiveMQ Artemis Messaging Engine", brokercaps.Unknown},
		{"", brokercaps.Unknown},
		{"stompd", brokercaps.Unknown},
	}
	for _, tt := range tests {
		if got := brokercaps.Detect(tt.server); got != tt.want {
			t.Errorf("Detect(%q) = %q, want %q", tt.server, got, tt.want)
		}
	}
}

func TestForUnknownIsConservative(t *testing.T) {
	t.Parallel()
	c := brokercaps.For("artemis")
	if c.Kind != brokercaps.Unknown || c.Selectors || c.NackRequeues || c.StableMessageID || c.PrefetchHeader != "" {
		t.Fatalf("For(artemis) = %+v, want the conservative unknown entry", c)
	}
}

func TestDurableSubscribeOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind string
		want map[string]string
	}{
		{brokercaps.ActiveMQ, map[string]string{"id": "s1", "activemq.subscriptionName": "s1"}},
		{brokercaps.RabbitMQ, map[string]string{"id": "s1", "durable": "true", "auto-delete": "false"}},
		{brokercaps.Embedded, map[string]string{"id": "s1", "durable": "true", "auto-delete": "false"}},
	}
	for _, tt := range tests {
		f := frame.New(frame.SUBSCRIBE)
		for _, opt := range brokercaps.For(tt.kind).DurableSubscribeOptions("s1", "c1") {
			if err := opt(f); err != nil {
				t.Fatal(err)
			}
		}
		for k, v := range tt.want {
			if got := f.Header.Get(k); got != v {
				t.Errorf("%s: header %s = %q, want %q", tt.kind, k, got, v)
			}
		}
		if f.Header.Len() != len(tt.want) {
			t.Errorf("%s: %d headers, want %d", tt.kind, f.Header.Len(), len(tt.want))
		}
	}
}
