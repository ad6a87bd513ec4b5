package broker

import (
	"strconv"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
)

// Destinations reports each queue's depth, bytes, messages in flight and
// consumers, and each topic's subscriptions added up, sorted by name.
func TestDestinationsReportsQueuesAndTopics(t *testing.T) {
	b := startBroker(t, Config{})
	c := dial(t, b)
	for _, body := range []string{"one", "two", "three"} {
		send(t, c, "/queue/stats.waiting", body)
	}
	consumer := dial(t, b)
	s := subscribe(t, consumer, "/queue/stats.held", stomp.AckClientIndividual, stomp.SubscribeOpt.Header("prefetch-count", "1"))
	send(t, c, "/queue/stats.held", "held")
	send(t, c, "/queue/stats.held", "behind")
	recv(t, s) // not acknowledged: in flight
	subscribe(t, dial(t, b), "/topic/stats.news", stomp.AckAuto)
	subscribe(t, dial(t, b), "/topic/stats.news", stomp.AckAuto)

	want := []DestinationStats{
		{Destination: "/queue/stats.held", Pending: 1, PendingBytes: len("behind"), InFlight: 1, Consumers: 1},
		{Destination: "/queue/stats.waiting", Pending: 3, PendingBytes: len("onetwothree")},
		{Destination: "/topic/stats.news", Consumers: 2},
	}
	// A SUBSCRIBE without a receipt is under way when Subscribe returns.
	waitFor(t, func() bool {
		got := b.Destinations()
		return len(got) == len(want) && got[2].Consumers == 2
	})
	got := b.Destinations()
	if len(got) != len(want) {
		t.Fatalf("destinations = %+v, want %+v", got, want)
	}
	for i := range want {
		got[i].OldestAge = 0 // TestOldestAgeReadsTheBacklogOnDisk
		if got[i] != want[i] {
			t.Errorf("destination %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// The oldest waiting message's age comes from its timestamp header, also
// when it waits on disk only.
func TestOldestAgeReadsTheBacklogOnDisk(t *testing.T) {
	b := startBroker(t, Config{DataDir: t.TempDir()})
	c := dial(t, b)
	sent := time.Now().Add(-time.Minute).UnixMilli()
	send(t, c, "/queue/stats.old", "first", persistent, stomp.SendOpt.Header("timestamp", strconv.FormatInt(sent, 10)))
	sendMany(t, c, "/queue/stats.old", "later", windowEntries+10)
	send(t, c, "/queue/stats.old", "urgent", persistent, stomp.SendOpt.Header("priority", "8"),
		stomp.SendOpt.Header("timestamp", strconv.FormatInt(sent-1000, 10)))
	var got DestinationStats
	for _, s := range b.Destinations() {
		if s.Destination == "/queue/stats.old" {
			got = s
		}
	}
	if got.Pending != windowEntries+12 || got.OldestAge < time.Minute || got.OldestAge > 2*time.Minute {
		t.Fatalf("stats %+v: want %d pending, the oldest ~61 s old", got, windowEntries+12)
	}
}
