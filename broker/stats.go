package broker

import "sort"

// DestinationStats is a snapshot of one destination of the broker, for
// metrics: a /queue/ destination, or a /topic/ destination with its
// subscriptions' queues (durable and not) added up.
type DestinationStats struct {
	Destination string
	// Pending counts the messages waiting for a consumer; PendingBytes
	// their bodies' bytes.
	Pending      int
	PendingBytes int
	// InFlight counts the messages delivered and not yet acknowledged.
	InFlight int
	// Consumers counts the subscriptions receiving from the destination
	// (a durable topic subscription whose subscriber is away counts none).
	Consumers int
}

// Destinations returns a snapshot of every destination the broker holds,
// sorted by name. It only reads: it takes the broker's lock for as long
// as it counts, creates nothing, and is goroutine-safe.
func (b *Broker) Destinations() []DestinationStats {
	b.mu.Lock()
	out := make([]DestinationStats, 0, len(b.queues)+len(b.topics))
	for dest, q := range b.queues {
		s := DestinationStats{Destination: dest}
		s.add(q)
		out = append(out, s)
	}
	for dest, subs := range b.topics {
		s := DestinationStats{Destination: dest}
		for q := range subs {
			s.add(q)
		}
		out = append(out, s)
	}
	b.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Destination < out[j].Destination })
	return out
}

// add counts q's messages and consumers into s (the caller holds b.mu).
func (s *DestinationStats) add(q *queue) {
	s.Pending += q.pending
	s.PendingBytes += q.bytes
	s.InFlight += q.inflight
	s.Consumers += len(q.consumers)
}
