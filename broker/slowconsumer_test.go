package broker

import (
	"bytes"
	"net"
	"runtime"
	"strconv"
	"testing"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
)

// liveHeap is the bytes of the process's heap that are reachable, after two
// collections (the second empties the sync.Pools, the broker's write
// buffers among them).
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// TestSlowConsumersAreBoundedAndReleased: 100 consumers subscribe with
// ack:auto to a queue and a topic and never read their sockets; a producer
// sends 5,000 4 KiB messages to the topic (20 MiB for each subscriber),
// then 10,000 persistent ones to the queue. The broker's heap stays within
// slowHeapBound of its idle level while they hang on (delivery to them
// paused, the queue's messages still queued), and comes back to within
// slowHeapSlack once they have closed and the queue has been drained.
//
// Not in parallel: it measures the whole process's heap.
func TestSlowConsumersAreBoundedAndReleased(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 60 MiB through 100 connections")
	}
	const (
		consumers   = 100
		pendingCap  = 256 << 10 // MaxPendingBytes
		memCap      = 16 << 20  // MaxMemoryBytes
		bodySize    = 4 << 10
		queueMsgs   = 10000
		topicMsgs   = 5000
		queueDest   = "/queue/slow.work"
		topicDest   = "/topic/slow.firehose"
		heapSlack   = 8 << 20
		perConsumer = 2*pendingCap + // frames queued for its socket, and the undelivered messages of its topic subscription
			writeBufferSize + 4<<10 // the write buffer it holds while its write blocks, the frame writer's
		// slowHeapBound: what the consumers may hold, the queue's bodies in
		// memory before they spill to disk, and room for the queue's
		// entries and the collector's lag. Without the cap each topic
		// subscriber alone would hold its 5,000 entries.
		slowHeapBound = consumers*perConsumer + memCap + heapSlack
	)
	b := startBroker(t, Config{DataDir: t.TempDir(), MaxPendingBytes: pendingCap, MaxMemoryBytes: memCap})
	idle := liveHeap()

	slow := make([]*rawConn, consumers)
	for i := range slow {
		r := dialRaw(t, b)
		_ = r.nc.(*net.TCPConn).SetReadBuffer(16 << 10) // keep what the kernel takes small
		r.connect("1.2")
		r.write("SUBSCRIBE\nid:q\ndestination:" + queueDest + "\nack:auto\n\n\x00" +
			"SUBSCRIBE\nid:t\ndestination:" + topicDest + "\nack:auto\nreceipt:subscribed\n\n\x00")
		if f := r.read(); f == nil || f.Command != "RECEIPT" {
			t.Fatalf("consumer %d: want RECEIPT, got %v", i, f)
		}
		slow[i] = r
	}

	producer := dial(t, b)
	body := bytes.Repeat([]byte("s"), bodySize)
	for range topicMsgs { // first: they fill the consumers' sockets
		must(t, producer.Send(topicDest, "text/plain", body))
	}
	for range queueMsgs {
		must(t, producer.Send(queueDest, "text/plain", body, persistent))
	}
	send(t, producer, queueDest, "last", persistent) // with a receipt: everything before is applied

	held := liveHeap() - idle
	stats, _ := b.QueueStats(queueDest)
	t.Logf("with %d slow consumers: heap %d MiB above idle (bound %d MiB); queue %d pending",
		consumers, held>>20, slowHeapBound>>20, stats.Pending)
	if held > slowHeapBound {
		t.Errorf("heap %d MiB above idle with slow consumers, want at most %d MiB", held>>20, slowHeapBound>>20)
	}
	if stats.Pending == 0 {
		t.Error("every queue message was handed to the slow consumers: delivery did not pause")
	}

	for _, r := range slow {
		_ = r.nc.Close()
	}
	waitFor(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.conns) == 1 // the producer
	})
	drain := dialRaw(t, b)
	drain.connect("1.2")
	drain.write("SUBSCRIBE\nid:d\ndestination:" + queueDest + "\nack:auto\n\n\x00")
	for {
		if s, _ := b.QueueStats(queueDest); s.Pending == 0 {
			break
		}
		if f := drain.read(); f == nil {
			t.Fatal("draining consumer disconnected")
		}
	}
	_ = drain.nc.Close()
	waitFor(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.conns) == 1
	})

	left := liveHeap() - idle
	t.Logf("after they closed: heap %d MiB above idle", left>>20)
	if left > heapSlack {
		t.Errorf("heap %d MiB above idle after the consumers closed, want at most %d MiB", left>>20, heapSlack>>20)
	}
}

// A consumer that stops reading pauses delivery to itself: a queue keeps
// its messages, and they all arrive, in order, once it reads again; a
// non-durable topic subscriber loses its oldest undelivered messages and
// still gets the newest.
func TestSlowConsumerPausesAndResumes(t *testing.T) {
	t.Parallel()
	const n = 1500 // 15 MiB of 10 KiB messages, far past MaxPendingBytes and what the sockets take (4 MiB by default on Linux)
	for _, tc := range []struct {
		dest    string
		allKept bool
	}{
		{dest: "/queue/slow.resume", allKept: true},
		{dest: "/topic/slow.resume", allKept: false},
	} {
		t.Run(tc.dest, func(t *testing.T) {
			t.Parallel()
			b := startBroker(t, Config{MaxPendingBytes: 64 << 10})
			r := dialRaw(t, b)
			_ = r.nc.(*net.TCPConn).SetReadBuffer(16 << 10)
			r.connect("1.2")
			r.write("SUBSCRIBE\nid:1\ndestination:" + tc.dest + "\nack:auto\nreceipt:s\n\n\x00")
			if f := r.read(); f == nil || f.Command != frame.RECEIPT {
				t.Fatalf("want RECEIPT, got %v", f)
			}
			c := dial(t, b)
			body := bytes.Repeat([]byte("r"), 10<<10)
			for i := range n {
				must(t, c.Send(tc.dest, "text/plain", body, stomp.SendOpt.Header("n", strconv.Itoa(i))))
			}
			send(t, c, "/queue/slow.sync", "applied") // with a receipt: every send is applied
			if s, ok := b.QueueStats(tc.dest); ok && s.Pending == 0 {
				t.Errorf("queue %s has nothing pending: delivery did not pause", tc.dest)
			}
			got, last := 0, -1
			for last < n-1 {
				f := r.read()
				if f == nil {
					t.Fatalf("disconnected after %d messages", got)
				}
				i, _ := strconv.Atoi(f.Header.Get("n"))
				if i <= last {
					t.Fatalf("message %d after %d", i, last)
				}
				if tc.allKept && i != last+1 {
					t.Fatalf("message %d after %d: queue messages were lost", i, last)
				}
				got, last = got+1, i
			}
			if !tc.allKept && got == n {
				t.Errorf("the slow topic subscriber got all %d messages: none was discarded", n)
			}
			t.Logf("%s: %d of %d messages delivered", tc.dest, got, n)
		})
	}
}
