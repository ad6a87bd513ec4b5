package broker

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
	bolt "go.etcd.io/bbolt"
)

// sendMany sends n persistent messages to dest with bodies prefix-0 …,
// the last with a receipt (so all are stored when it returns).
func sendMany(t testing.TB, c *stomp.Conn, dest, prefix string, n int) {
	t.Helper()
	for i := range n {
		o := []func(*frame.Frame) error{persistent}
		if i == n-1 {
			o = append(o, stomp.SendOpt.Receipt)
		}
		if err := c.Send(dest, "text/plain", []byte(prefix+"-"+strconv.Itoa(i)), o...); err != nil {
			t.Fatal(err)
		}
	}
}

// prefetch10 keeps go-stomp's client from stalling: its reader blocks on
// a full subscription channel while the test's ACKs wait behind it.
var prefetch10 = stomp.SubscribeOpt.Header("prefetch-count", "10")

func TestABacklogBeyondTheWindowStaysOnDiskAndComesBackInOrder(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, Config{DataDir: dir})
	c := dial(t, b)
	const n = 3*windowEntries + 17
	sendMany(t, c, "/queue/deep", "m", n)
	waitFor(t, func() bool { s, _ := b.QueueStats("/queue/deep"); return s.Pending == n })
	b.mu.Lock()
	q := b.queues["/queue/deep"]
	mem, disk := q.mem, q.disk
	b.mu.Unlock()
	if mem > windowEntries || mem+disk != n {
		t.Fatalf("in memory %d, on disk only %d; want at most %d in memory and %d in all", mem, disk, windowEntries, n)
	}
	_ = b.Close()

	b2 := startBroker(t, Config{DataDir: dir})
	if s, _ := b2.QueueStats("/queue/deep"); s.Pending != n {
		t.Fatalf("after restart %d pending, want %d", s.Pending, n)
	}
	b2.mu.Lock()
	memAfter := b2.queues["/queue/deep"].mem
	b2.mu.Unlock()
	if memAfter != 0 {
		t.Fatalf("restart read %d entries; want none before a consumer comes", memAfter)
	}
	c2 := dial(t, b2)
	s := subscribe(t, c2, "/queue/deep", stomp.AckClientIndividual, prefetch10)
	for i := range n {
		m := recv(t, s)
		if want := "m-" + strconv.Itoa(i); string(m.Body) != want {
			t.Fatalf("message %d is %q, want %q", i, m.Body, want)
		}
		must(t, c2.Ack(m))
	}
	waitFor(t, func() bool { st, _ := b2.QueueStats("/queue/deep"); return st.Pending == 0 && st.InFlight == 0 })
}

func TestAHigherPriorityOvertakesABacklogOnDisk(t *testing.T) {
	b := startBroker(t, Config{DataDir: t.TempDir()})
	c := dial(t, b)
	sendMany(t, c, "/queue/prio", "low", 2*windowEntries)
	send(t, c, "/queue/prio", "urgent", persistent, stomp.SendOpt.Header("priority", "9"))
	s := subscribe(t, c, "/queue/prio", stomp.AckClientIndividual)
	// The window (low-0 … low-999) was read before "urgent" arrived only if
	// a consumer was there; it was not: the first message is the urgent one.
	if m := recv(t, s); string(m.Body) != "urgent" {
		t.Fatalf("first message %q, want urgent", m.Body)
	}
}

func TestDeliveryCountsSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, Config{DataDir: dir})
	c := dial(t, b)
	send(t, c, "/queue/again", "x", persistent)
	s := subscribe(t, c, "/queue/again", stomp.AckClientIndividual)
	must(t, c.Nack(recv(t, s)))
	if m := recv(t, s); m.Header.Get("delivery-count") != "2" {
		t.Fatalf("second delivery-count %q", m.Header.Get("delivery-count"))
	}
	_ = b.Close() // the second delivery goes back unacknowledged

	b2 := startBroker(t, Config{DataDir: dir})
	c2 := dial(t, b2)
	m := recv(t, subscribe(t, c2, "/queue/again", stomp.AckClientIndividual))
	if got := m.Header.Get("delivery-count"); got != "3" || m.Header.Get("redelivered") != "true" {
		t.Fatalf("delivery-count %q redelivered %q after restart, want 3 and true", got, m.Header.Get("redelivered"))
	}
}

func TestExpiredMessagesGoToTheDeadLetterQueueWhenAsked(t *testing.T) {
	b := startBroker(t, Config{DataDir: t.TempDir(), DeadLetterExpired: true})
	c := dial(t, b)
	past := strconv.FormatInt(time.Now().Add(-time.Second).UnixMilli(), 10)
	send(t, c, "/queue/ttl", "stale", persistent, stomp.SendOpt.Header("expires", past))
	send(t, c, "/queue/ttl", "fresh", persistent)
	if m := recv(t, subscribe(t, c, "/queue/ttl", stomp.AckAuto)); string(m.Body) != "fresh" {
		t.Fatalf("got %q, want fresh", m.Body)
	}
	m := recv(t, subscribe(t, c, "/queue/ttl.DLQ", stomp.AckAuto))
	if string(m.Body) != "stale" || m.Header.Get("dead-letter-reason") != "expired" || m.Header.Get("original-destination") != "/queue/ttl" {
		t.Fatalf("dead letter %q with headers %v", m.Body, m.Header)
	}
}

func TestADurableSubscriptionKeepsABacklogAndItsRemovalDeletesIt(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, Config{DataDir: dir})
	sub := dial(t, b, stomp.ConnOpt.Header("client-id", "c1"))
	s := subscribe(t, sub, "/topic/feed", stomp.AckClientIndividual, stomp.SubscribeOpt.Header("activemq.subscriptionName", "d1"))
	must(t, s.Unsubscribe())
	c := dial(t, b)
	const n = 2*windowEntries + 5
	sendMany(t, c, "/topic/feed", "f", n)
	_ = b.Close()

	b2 := startBroker(t, Config{DataDir: dir})
	sub2 := dial(t, b2, stomp.ConnOpt.Header("client-id", "c1"))
	s2 := subscribe(t, sub2, "/topic/feed", stomp.AckClientIndividual, stomp.SubscribeOpt.Header("activemq.subscriptionName", "d1"), prefetch10)
	for i := range n {
		m := recv(t, s2)
		if want := "f-" + strconv.Itoa(i); string(m.Body) != want {
			t.Fatalf("message %d is %q, want %q", i, m.Body, want)
		}
		if i == n/2 {
			break
		}
		must(t, sub2.Ack(m))
	}
	must(t, s2.Unsubscribe(stomp.SubscribeOpt.Header("activemq.subscriptionName", "d1"), stomp.SubscribeOpt.Header("durable", "true")))
	waitFor(t, func() bool { return journalCounts(t, b2) == 0 })
}

// journalCounts sums the entries the journal counts for every queue.
func journalCounts(t testing.TB, b *Broker) int64 {
	t.Helper()
	var n int64
	must(t, b.journal.view(func(db *bolt.DB) error {
		return db.View(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketNames[bucketCounts]).ForEach(func(_, v []byte) error {
				n += decodeCount(v).entries
				return nil
			})
		})
	}))
	return n
}

func TestADrainedJournalIsCompactedOnline(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~100 MiB")
	}
	dir := t.TempDir()
	b := startBroker(t, Config{DataDir: dir})
	c := dial(t, b)
	body := make([]byte, 64<<10)
	for i := range 1500 { // ~96 MiB
		o := []func(*frame.Frame) error{persistent}
		if i == 1499 {
			o = append(o, stomp.SendOpt.Receipt)
		}
		must(t, c.Send("/queue/big", "application/octet-stream", body, o...))
	}
	path := filepath.Join(dir, "broker.db")
	peak := fileSize(t, path)
	s := subscribe(t, c, "/queue/big", stomp.AckClientIndividual, prefetch10)
	for range 1500 {
		must(t, c.Ack(recv(t, s)))
	}
	deadline := time.Now().Add(30 * time.Second)
	for fileSize(t, path) > peak/10 { // with no more traffic
		if time.Now().After(deadline) {
			t.Fatalf("journal %d bytes 30 s after draining, peak %d: not compacted", fileSize(t, path), peak)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("journal %d bytes at peak, %d after draining", peak, fileSize(t, path))
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// A journal written before entries were keyed by priority (bucket
// "messages", keys queue name, 0, seq) opens with its messages.
func TestALegacyJournalOpensWithItsMessages(t *testing.T) {
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, "broker.db"), 0o600, nil)
	must(t, err)
	must(t, db.Update(func(tx *bolt.Tx) error {
		old, err := tx.CreateBucket(legacyMessages)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucket(bucketNames[bucketSubs]); err != nil {
			return err
		}
		for i, p := range []int{4, 9, 4} {
			e := &entry{id: "old-" + strconv.Itoa(i), dest: "/queue/legacy", priority: p, deliveries: i,
				hdr: []string{"priority", strconv.Itoa(p)}, body: []byte("body-" + strconv.Itoa(i))}
			key := append(append([]byte("/queue/legacy"), 0), 0, 0, 0, 0, 0, 0, 0, byte(i+1))
			if err := old.Put(key, encodeEntry(e)); err != nil {
				return err
			}
		}
		return nil
	}))
	must(t, db.Close())

	b := startBroker(t, Config{DataDir: dir})
	c := dial(t, b)
	s := subscribe(t, c, "/queue/legacy", stomp.AckClientIndividual, prefetch10)
	for _, want := range []string{"body-1", "body-0", "body-2"} {
		m := recv(t, s)
		if string(m.Body) != want {
			t.Fatalf("got %q, want %q", m.Body, want)
		}
		must(t, c.Ack(m))
	}
	send(t, c, "/queue/legacy", "new", persistent)
	if m := recv(t, s); string(m.Body) != "new" {
		t.Fatalf("got %q after the legacy messages, want new", m.Body)
	}
}
