package broker

import (
	"testing"

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
		if got[i] != want[i] {
			t.Errorf("destination %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
