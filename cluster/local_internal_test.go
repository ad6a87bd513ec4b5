package cluster

import (
	"fmt"
	"testing"
	"time"
)

// Processed markers are bounded: past the cap the oldest are dropped, and
// expired ones are dropped as new ones arrive.
func TestLocalMarkersBounded(t *testing.T) {
	t.Parallel()
	l := NewLocal("a")
	l.maxMarkers = 10
	ctx := t.Context()
	for i := range 25 {
		if err := l.MarkProcessed(ctx, fmt.Sprint(i), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(l.markers); n != 10 {
		t.Fatalf("%d markers kept, want the cap of 10", n)
	}
	for key, want := range map[string]bool{"0": false, "14": false, "15": true, "24": true} {
		if got, _ := l.Processed(ctx, key); got != want {
			t.Errorf("Processed(%s) = %v, want %v", key, got, want)
		}
	}
	// Re-marking a key keeps it (its older queue entry is stale, not final).
	if err := l.MarkProcessed(ctx, "15", time.Hour); err != nil {
		t.Fatal(err)
	}
	for i := 100; i < 108; i++ {
		_ = l.MarkProcessed(ctx, fmt.Sprint(i), time.Hour)
	}
	if got, _ := l.Processed(ctx, "15"); !got {
		t.Error("re-marked key dropped by its stale queue entry")
	}
	// Expired markers go as soon as a new marker arrives.
	l2 := NewLocal("a")
	_ = l2.MarkProcessed(ctx, "old", time.Millisecond)
	time.Sleep(5 * time.Millisecond)
	_ = l2.MarkProcessed(ctx, "new", time.Hour)
	if _, ok := l2.markers["old"]; ok || l2.order.len() != 1 {
		t.Fatalf("expired marker kept: %v", l2.markers)
	}
}

// The marker queue is first in, first out, also when it grows while its
// ring has wrapped around.
func TestMarkerQueueOrder(t *testing.T) {
	t.Parallel()
	var q markerQueue
	next, want := 0, 0
	for round := range 50 {
		for range round % 7 * 5 {
			q.push(marker{key: fmt.Sprint(next)})
			next++
		}
		for range round % 5 * 4 {
			if q.len() == 0 {
				break
			}
			if got := q.front().key; got != fmt.Sprint(want) {
				t.Fatalf("front %s, want %d", got, want)
			}
			q.pop()
			want++
		}
	}
	if q.len() != next-want {
		t.Fatalf("len %d, want %d", q.len(), next-want)
	}
}

// An in-doubt marker dropped by the cap takes its message id with it: the
// key marked again later reads as what that later mark says.
func TestLocalInDoubtMarkersBounded(t *testing.T) {
	t.Parallel()
	l := NewLocal("a")
	l.maxMarkers = 2
	ctx := t.Context()
	for _, key := range []string{"a", "b", "c"} {
		if err := l.MarkInDoubt(ctx, key, "id-"+key, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if len(l.doubts) != 2 {
		t.Fatalf("%d in-doubt ids kept, want 2: %v", len(l.doubts), l.doubts)
	}
	if m, _ := l.Marker(ctx, "a"); m != (Marker{}) {
		t.Fatalf("evicted marker reads %+v", m)
	}
	_ = l.MarkProcessed(ctx, "c", time.Hour)
	if m, _ := l.Marker(ctx, "c"); m != (Marker{Processed: true}) || l.doubts["c"] != "" {
		t.Fatalf("marker c = %+v after MarkProcessed (ids %v)", m, l.doubts)
	}
}
