package broker

import (
	"bytes"
	"encoding/binary"
	"sort"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

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
	// OldestAge is how long the oldest waiting message has waited (by its
	// timestamp header, set when it was sent); 0 with none waiting.
	OldestAge time.Duration
}

// Destinations returns a snapshot of every destination the broker holds,
// sorted by name. It only reads: it takes the broker's lock for as long
// as it counts, creates nothing, and is goroutine-safe.
func (b *Broker) Destinations() []DestinationStats {
	b.mu.Lock()
	now := nowMillis()
	out := make([]DestinationStats, 0, len(b.queues)+len(b.topics))
	for dest, q := range b.queues {
		s := DestinationStats{Destination: dest}
		s.add(q, b.oldest(q), now)
		out = append(out, s)
	}
	for dest, subs := range b.topics {
		s := DestinationStats{Destination: dest}
		for q := range subs {
			s.add(q, b.oldest(q), now)
		}
		out = append(out, s)
	}
	b.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Destination < out[j].Destination })
	return out
}

// add counts q's messages and consumers into s, and its oldest waiting
// message's timestamp, oldest (ms since epoch, 0 for none).
func (s *DestinationStats) add(q *queue, oldest, now int64) {
	s.Pending += q.pending
	s.PendingBytes += q.bytes
	s.InFlight += q.inflight
	s.Consumers += len(q.consumers)
	if oldest > 0 {
		s.OldestAge = max(s.OldestAge, time.Duration(now-oldest)*time.Millisecond)
	}
}

// oldest is the earliest timestamp of the messages waiting on q: of the
// first in memory of each priority, or of the first on disk of a priority
// with none in memory (one journal read). Called with b.mu held.
func (b *Broker) oldest(q *queue) int64 {
	var min int64
	for p := range q.levels {
		lv := &q.levels[p]
		var ts int64
		switch {
		case lv.Len() > 0:
			ts = timestamp(lv.Front().Value.(*entry).hdr)
		case lv.disk > 0 && b.journal != nil:
			ts = b.journal.firstTimestamp(q.name, p, lv.next)
		}
		if ts > 0 && (min == 0 || ts < min) {
			min = ts
		}
	}
	return min
}

// timestamp reads the timestamp header of hdr (ms since epoch), 0 when absent.
func timestamp(hdr []string) int64 {
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "timestamp" {
			ts, _ := strconv.ParseInt(hdr[i+1], 10, 64)
			return ts
		}
	}
	return 0
}

// firstTimestamp is the timestamp of the first stored entry of queue name
// and priority p from sequence number from on, 0 when there is none.
func (j *journal) firstTimestamp(name string, p int, from uint64) int64 {
	var ts int64
	lp := levelPrefix(name, p)
	_ = j.view(func(db *bolt.DB) error {
		return db.View(func(tx *bolt.Tx) error {
			k, v := tx.Bucket(bucketNames[bucketEntries]).Cursor().Seek(binary.BigEndian.AppendUint64(bytes.Clone(lp), from))
			if k == nil || !bytes.HasPrefix(k, lp) {
				return nil
			}
			if e, err := decodeEntry(v, false); err == nil {
				ts = timestamp(e.hdr)
			}
			return nil
		})
	})
	return ts
}
