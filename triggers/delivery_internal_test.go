package triggers

import (
	"context"
	"errors"
	"testing"
)

// A delivery buffers a bounded number of sends until it commits: past the
// bound Send fails (the script's run fails and the delivery rolls back)
// instead of holding unbounded memory.
func TestDeliveryBoundsBufferedSends(t *testing.T) {
	ctx := context.Background()
	t.Run("count", func(t *testing.T) {
		d := &stompDelivery{}
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
		d := &stompDelivery{}
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
