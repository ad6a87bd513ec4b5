package brokerbacklog

import (
	"strconv"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3/frame"
)

// drainLog is what a consumer saw of the backlog before the kill.
type drainLog struct {
	delivered []bool           // by seq: received
	acked     []bool           // by seq: ACK sent (confirmed or not)
	confirmed []bool           // by seq: ACK confirmed by its receipt
	batches   map[string][]int // receipt id → seqs acked since the last receipt
	batch     []int
}

// handle records one frame: a MESSAGE is acked (every ackReceipt-th ACK
// with a receipt), a RECEIPT confirms the ACKs of its batch.
func (d *drainLog) handle(t *testing.T, c *rawConn, f *frame.Frame) {
	t.Helper()
	switch f.Command {
	case frame.MESSAGE:
		seq, err := seqOf(f, msgSize)
		if err != nil {
			t.Fatal(err)
		}
		if d.delivered[seq] {
			t.Fatalf("before the kill: message %d delivered twice", seq)
		}
		d.delivered[seq], d.acked[seq] = true, true
		d.batch = append(d.batch, seq)
		hdr := []string{frame.Id, f.Header.Get(frame.Ack)}
		if len(d.batch) == ackReceipt {
			id := "acks-" + strconv.Itoa(seq)
			d.batches[id], d.batch = d.batch, nil
			hdr = append(hdr, frame.Receipt, id)
		}
		c.frame(frame.ACK, nil, hdr...)
	case frame.RECEIPT:
		for _, seq := range d.batches[f.Header.Get(frame.ReceiptId)] {
			d.confirmed[seq] = true
		}
		delete(d.batches, f.Header.Get(frame.ReceiptId))
	}
}

// A broker killed with SIGKILL in the middle of draining 100,000
// persistent messages loses none of them and delivers none again whose
// ACK it had confirmed with a receipt: after the restart, the messages
// confirmed acked and those drained afterwards are every message sent.
// Messages acked without a confirmation may or may not come again (the
// ACK may have been applied just before the kill), and so may messages
// that were delivered but not acked; none comes twice after the restart.
func TestKill9DuringDrainLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 100,000 persistent 1 KiB messages to a broker process and kills it while they are drained")
	}
	b := startBroker(t)
	const queue = "/queue/backlog.kill9"
	t0 := time.Now()
	fill(t, b.Addr, queue, killMsgs, msgSize, func(int) int { return 4 })
	t.Logf("filled %d messages in %s; %s", killMsgs, since(t0), rss(b.PID()))

	d := &drainLog{delivered: make([]bool, killMsgs), acked: make([]bool, killMsgs), confirmed: make([]bool, killMsgs), batches: map[string][]int{}}
	c := dialRawT(t, b.Addr)
	subscribe(c, queue, prefetch)
	for received := 0; received < killAfter; {
		f, err := c.next(30 * time.Second)
		if err != nil {
			t.Fatalf("before the kill, after %d messages: %v", received, err)
		}
		if f.Command == frame.MESSAGE {
			received++
		}
		d.handle(t, c, f)
	}
	_ = c.flush()
	b.Kill9()
	// Receipts the broker wrote before it died still count; messages read
	// now are not acked (the connection is gone), only recorded.
	for {
		f, err := c.next(time.Second)
		if err != nil {
			break
		}
		if f.Command == frame.MESSAGE {
			seq, err := seqOf(f, msgSize)
			if err != nil {
				t.Fatal(err)
			}
			d.delivered[seq] = true
			continue
		}
		d.handle(t, c, f)
	}
	t.Logf("killed after %d deliveries: %d acks confirmed, %d not", count(d.delivered), count(d.confirmed), count(d.acked)-count(d.confirmed))

	t0 = time.Now()
	if err := b.Start(); err != nil {
		t.Fatalf("start after the kill: %v", err)
	}
	t.Logf("restarted to CONNECTED in %s (polled every 200 ms); %s", since(t0), rss(b.PID()))
	drainAfterKill(t, b.Addr, queue, d)
}

// drainAfterKill drains what the restarted broker still has and checks it
// against what was seen before the kill.
func drainAfterKill(t *testing.T, addr, queue string, d *drainLog) {
	c := dialRawT(t, addr)
	subscribe(c, queue, prefetch)
	seen := make([]bool, killMsgs)
	again, redelivered := 0, 0
	// Every message never acked must come; the others may come too.
	for missing := killMsgs - count(d.acked); missing > 0; {
		f, err := c.next(30 * time.Second)
		if err != nil {
			t.Fatalf("after the restart, %d messages never acked still missing: %v", missing, err)
		}
		seq, err := seqOf(f, msgSize)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case seen[seq]:
			t.Fatalf("after the restart: message %d delivered twice", seq)
		case d.confirmed[seq]:
			t.Errorf("message %d was confirmed acked before the kill and is delivered again", seq)
		case !d.acked[seq]:
			missing--
		}
		seen[seq] = true
		if d.delivered[seq] {
			again++
			if f.Header.Get("redelivered") == "true" {
				redelivered++
			}
		}
		c.frame(frame.ACK, nil, frame.Id, f.Header.Get(frame.Ack))
	}
	expectNothingMore(t, c)
	gone := 0 // acked without confirmation, and applied before the kill
	for seq := range killMsgs {
		if d.acked[seq] && !d.confirmed[seq] && !seen[seq] {
			gone++
		}
	}
	t.Logf("after the restart: %d delivered, %d of them delivered before the kill (%d marked redelivered); %d acked without confirmation did not come back",
		count(seen), again, redelivered, gone)
}

func count(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// A message given back twice and then kept across a graceful restart
// comes a third time with delivery-count 3 and redelivered: the count
// survives the restart.
func TestDeliveryCountsSurviveRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a broker process")
	}
	b := startBroker(t)
	const queue = "/queue/backlog.counts"
	fill(t, b.Addr, queue, 1, msgSize, func(int) int { return 4 })
	for want := 1; want <= 2; want++ {
		if got := receiveAndGiveBack(t, b.Addr, queue).Header.Get("delivery-count"); got != strconv.Itoa(want) {
			t.Fatalf("delivery %d before the restart: delivery-count %q", want, got)
		}
	}
	b.Restart(t)
	f := receiveAndGiveBack(t, b.Addr, queue)
	if got := f.Header.Get("delivery-count"); got != "3" || f.Header.Get("redelivered") != "true" {
		t.Errorf("after the restart: delivery-count %q, redelivered %q; want 3, true", got, f.Header.Get("redelivered"))
	}
}

// receiveAndGiveBack takes one message from queue and disconnects without
// acking it, so the broker gives it back.
func receiveAndGiveBack(t *testing.T, addr, queue string) *frame.Frame {
	t.Helper()
	c := dialRawT(t, addr)
	subscribe(c, queue, 1)
	f, err := c.next(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if f.Command != frame.MESSAGE {
		t.Fatalf("want a MESSAGE, got %s", f.Command)
	}
	if err := c.disconnect(); err != nil {
		t.Fatal(err)
	}
	return f
}
