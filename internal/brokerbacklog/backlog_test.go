package brokerbacklog

import (
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3/frame"

	"github.com/opsrunner/opsrunner/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	msgSize = 1024 // body bytes of every message

	restartMsgs = 200_000 // TestBacklogSurvivesRestart's backlog: 200 MiB of bodies
	killMsgs    = 100_000 // TestKill9DuringDrainLosesNothing's backlog
	killAfter   = 40_000  // messages received before the kill
	ackReceipt  = 100     // every ackReceipt-th ACK asks for a receipt
	prefetch    = 1000    // drain consumers' prefetch
	quiet       = 2 * time.Second
)

// startBroker starts an `opsrunner broker` child of its own, stopped when
// the test ends.
func startBroker(t *testing.T) *testenv.Broker {
	t.Helper()
	b, err := testenv.StartEmbeddedArgs()
	if err != nil {
		testenv.Unavailable(t, "opsrunner broker process", err)
	}
	t.Cleanup(b.Stop)
	return b
}

// subscribe subscribes c to queue with client-individual ack and prefetch n.
func subscribe(c *rawConn, queue string, n int) {
	c.frame(frame.SUBSCRIBE, nil, frame.Id, "1", frame.Destination, queue, frame.Ack, "client-individual", "prefetch-count", strconv.Itoa(n))
}

// A backlog of 200,000 persistent 1 KiB messages in three priorities
// survives a graceful restart: drained afterwards, every message comes
// exactly once, intact, and within each priority in the order sent.
func TestBacklogSurvivesRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 200,000 persistent 1 KiB messages to a broker process, restarts it and drains them")
	}
	b := startBroker(t)
	const queue = "/queue/backlog.restart"
	priority := func(seq int) int { return [...]int{0, 4, 9}[seq%3] }
	t0 := time.Now()
	fill(t, b.Addr, queue, restartMsgs, msgSize, priority)
	t.Logf("filled %d messages in %s; %s", restartMsgs, since(t0), rss(b.PID()))

	b.Stop()
	t0 = time.Now()
	if err := b.Start(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Logf("restarted to CONNECTED in %s (polled every 200 ms); %s", since(t0), rss(b.PID()))

	c := dialRawT(t, b.Addr)
	subscribe(c, queue, prefetch)
	t0 = time.Now()
	seen := make([]bool, restartMsgs)
	last := map[string]int{} // priority → last seq received
	for got := range restartMsgs {
		f, err := c.next(30 * time.Second)
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", got, restartMsgs, err)
		}
		seq, err := seqOf(f, msgSize)
		if err != nil {
			t.Fatal(err)
		}
		if seen[seq] {
			t.Fatalf("message %d delivered twice", seq)
		}
		seen[seq] = true
		p := f.Header.Get("priority")
		if p != strconv.Itoa(priority(seq)) {
			t.Fatalf("message %d has priority %q, sent with %d", seq, p, priority(seq))
		}
		if l, ok := last[p]; ok && seq < l {
			t.Fatalf("priority %s: message %d after %d", p, seq, l)
		}
		last[p] = seq
		c.frame(frame.ACK, nil, frame.Id, f.Header.Get(frame.Ack))
		if got == 0 {
			t.Logf("first message %s after the subscription", since(t0))
		}
	}
	t.Logf("drained %d messages in %s; %s", restartMsgs, since(t0), rss(b.PID()))
	expectNothingMore(t, c)
}

// expectNothingMore fails if c receives another message within quiet,
// then disconnects (the receipt comes after every ACK was applied).
func expectNothingMore(t *testing.T, c *rawConn) {
	t.Helper()
	f, err := c.next(quiet)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("after the drain: want silence, got %v %v", f, err)
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	if err := c.disconnect(); err != nil {
		t.Fatal(err)
	}
}

func since(t0 time.Time) time.Duration { return time.Since(t0).Round(time.Millisecond) }
