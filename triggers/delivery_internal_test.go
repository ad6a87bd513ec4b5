package triggers

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// A delivery buffers a bounded number of sends until it commits: past the
// bound Send fails (the script's run fails and the delivery rolls back)
// instead of holding unbounded memory.
func TestDeliveryBoundsBufferedSends(t *testing.T) {
	ctx := context.Background()
	t.Run("count", func(t *testing.T) {
		d := newTestDelivery("A").Ops()[0]
		for i := range MaxPendingSends {
			if err := d.Send(ctx, "/queue/out", []byte("x"), nil); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		if err := d.Send(ctx, "/queue/out", []byte("x"), nil); !errors.Is(err, ErrTooManySends) {
			t.Fatalf("send past the count bound: err = %v, want ErrTooManySends", err)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		d := newTestDelivery("A").Ops()[0]
		half := make([]byte, MaxPendingSendBytes/2)
		for i := range 2 {
			if err := d.Send(ctx, "/queue/out", half, nil); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		if err := d.Send(ctx, "/queue/out", []byte("x"), nil); !errors.Is(err, ErrTooManySends) {
			t.Fatalf("send past the byte bound: err = %v, want ErrTooManySends", err)
		}
		if len(d.sends) != 2 {
			t.Fatalf("buffered %d sends, want 2", len(d.sends))
		}
	})
}

// A rollback decided after the ack timeout passed is the timeout's: the
// run was too late to decide, and its own cause would hide why.
func TestRollbackPastDeadlineIsAckTimeout(t *testing.T) {
	d := newTestDelivery("A")
	d.setDeadline(time.Now().Add(-time.Millisecond))
	if err := d.Ops()[0].Rollback(context.Background(), errors.New("script said no")); err != nil {
		t.Fatal(err)
	}
	if _, cause := d.Failed(); !errors.Is(cause, ErrAckTimeout) {
		t.Fatalf("cause = %v, want ErrAckTimeout", cause)
	}
	d = newTestDelivery("A")
	d.setDeadline(time.Now().Add(time.Hour))
	want := errors.New("script said no")
	_ = d.Ops()[0].Rollback(context.Background(), want)
	if _, cause := d.Failed(); cause != want {
		t.Fatalf("cause before the deadline = %v, want the script's", cause)
	}
}

// The event's body is handed to the runtime to parse when the content type
// says JSON, whatever the bytes (the runtime falls back to the text);
// otherwise it is text.
func TestEventBodyByContentType(t *testing.T) {
	for _, tt := range []struct {
		contentType string
		json        bool
	}{
		{"application/json", true},
		{"application/JSON; charset=utf-8", true},
		{"application/vnd.api+json", true},
		{"text/json", true},
		{"text/plain", false},
		{"", false},
		{"jso", false},
	} {
		d := NewDelivery(DeliveryConfig{Message: Message{ID: "m", Headers: Headers{"content-type", tt.contentType}, Body: []byte(`{"a":1}`)}})
		_, isRaw := EventFor(d)["body"].(json.RawMessage)
		if isRaw != tt.json {
			t.Errorf("content-type %q: body parsed as JSON = %v, want %v", tt.contentType, isRaw, tt.json)
		}
	}
}
