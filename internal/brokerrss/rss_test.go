package brokerrss

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/opsrunner/opsrunner/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The load: consumers that subscribe to a queue and a topic and never read
// their sockets, then topicMsgs messages to the topic and queueMsgs
// persistent ones to the queue, all of bodySize.
const (
	consumers = 100
	bodySize  = 4 << 10
	topicMsgs = 5000  // 20 MiB for each subscriber: 2 GiB if each kept its own
	queueMsgs = 20000 // 80 MiB, past memoryCap: the rest waits on disk

	// The broker's bounds (flags of `opsrunner broker`).
	pendingCap = 256 << 10 // --max-pending-bytes: per connection
	memoryCap  = 16 << 20  // --max-memory-bytes: persistent bodies held in memory

	// perConsumer is what one slow consumer may make the broker hold:
	// frames queued for its socket (pendingCap), its topic subscription's
	// undelivered messages (pendingCap again), the 64 KiB write buffer it
	// borrows while a write to it blocks, the frame writer's 4 KiB.
	perConsumer = 2*pendingCap + 64<<10 + 4<<10
	// journalBytes is what persistent sends may hold on their way to
	// disk: the writes waiting for the journal's committer (the broker's
	// maxPendingJournalBytes, 32 MiB, past which senders wait), the batch
	// being committed, and bbolt's copy of it.
	journalBytes = 3 * 32 << 20
	// liveBound is what the slow consumers, the queue and the journal may
	// hold live: it does not grow with the messages sent.
	liveBound = consumers*perConsumer + memoryCap + journalBytes
	// rssBound bounds the broker's anonymous RSS above its idle level
	// while the consumers hang on: the Go heap may grow to twice its live
	// part before a collection (GOGC=100), and 32 MiB is room for the
	// queue's message entries (about 200 bytes each), goroutine stacks
	// and the runtime. Without the bounds each topic subscriber alone
	// would keep its 20 MiB: 2 GiB.
	rssBound = 2*liveBound + 32<<20
	// rssSlack is how close to its idle level the RSS must come back once
	// the consumers have closed and the queue has been drained.
	rssSlack = 24 << 20
	// rssSettle is how long the RSS gets to come back (the Go runtime
	// returns freed memory to the system gradually).
	rssSettle = 60 * time.Second
)

// TestSlowConsumersRSS: 100 slow consumers of an `opsrunner broker`
// process (built without the race detector) keep its anonymous memory
// within rssBound of its idle level while they hang on, and once they
// have closed and the queue is drained, it comes back to within rssSlack
// of idle. The file-backed part of its RSS (the journal's memory map,
// page cache the kernel reclaims at will) is logged, not bounded.
func TestSlowConsumersRSS(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 100 MiB through 100 connections to a child process")
	}
	b, err := testenv.StartEmbeddedArgs(
		"--max-pending-bytes", strconv.Itoa(pendingCap),
		"--max-memory-bytes", strconv.Itoa(memoryCap),
	)
	if err != nil {
		testenv.Unavailable(t, "opsrunner broker process", err)
	}
	t.Cleanup(b.Stop)
	rss := func() (anon, file int64) {
		anon, file, err := rssOf(b.PID())
		if err != nil {
			t.Fatal(err)
		}
		return anon, file
	}
	producer, err := b.Dial(testenv.QuietLogs())
	if err != nil {
		t.Fatal(err)
	}
	defer producer.MustDisconnect()
	roundTrips(t, producer, "/queue/rss.warmup", 2000) // pools and buffers as they are in use
	idle, idleFile := rss()
	t.Logf("idle: anonymous %d MiB, file-backed %d MiB", idle>>20, idleFile>>20)

	slow := make([]net.Conn, consumers)
	for i := range slow {
		slow[i] = slowConsumer(t, b.Addr)
	}
	peak := watchPeak(b.PID())
	body := bytes.Repeat([]byte("s"), bodySize)
	for range topicMsgs { // first: they fill the consumers' sockets
		must(t, producer.Send("/topic/rss.firehose", "text/plain", body))
	}
	for range queueMsgs {
		must(t, producer.Send("/queue/rss.work", "text/plain", body, stomp.SendOpt.Header("persistent", "true")))
	}
	must(t, producer.Send("/queue/rss.work", "text/plain", []byte("end"), stomp.SendOpt.Header("persistent", "true"), stomp.SendOpt.Receipt))
	held, file := rss()
	top := peak()
	t.Logf("with %d slow consumers: anonymous %d MiB above idle (peak %d MiB; bound %d MiB), file-backed %d MiB",
		consumers, (held-idle)>>20, (top-idle)>>20, rssBound>>20, file>>20)
	if top-idle > rssBound {
		t.Errorf("anonymous RSS peaked %d MiB above idle with slow consumers, want at most %d MiB", (top-idle)>>20, rssBound>>20)
	}

	for _, c := range slow {
		_ = c.Close()
	}
	drained := drain(t, producer, "/queue/rss.work")
	t.Logf("drained %d queue messages the slow consumers had not taken", drained)
	if drained == 0 {
		t.Error("the slow consumers took every queue message: delivery to them did not pause")
	}
	start := time.Now()
	for {
		now, file := rss()
		if now-idle <= rssSlack {
			t.Logf("anonymous RSS back to %d MiB above idle after %s; file-backed %d MiB",
				(now-idle)>>20, time.Since(start).Round(100*time.Millisecond), file>>20)
			return
		}
		if time.Since(start) > rssSettle {
			t.Fatalf("anonymous RSS %d MiB above idle %s after the consumers closed, want at most %d MiB", (now-idle)>>20, rssSettle, rssSlack>>20)
		}
		roundTrips(t, producer, "/queue/rss.after", 50) // an idle broker collects no garbage
		time.Sleep(250 * time.Millisecond)
	}
}

// slowConsumer connects over raw TCP with a small socket buffer,
// subscribes to the queue and the topic (ack auto), and never reads
// again.
func slowConsumer(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.(*net.TCPConn).SetReadBuffer(16 << 10) // keep what the kernel takes small
	_, err = io.WriteString(nc, "CONNECT\naccept-version:1.2\nhost:x\n\n\x00"+
		"SUBSCRIBE\nid:q\ndestination:/queue/rss.work\nack:auto\n\n\x00"+
		"SUBSCRIBE\nid:t\ndestination:/topic/rss.firehose\nack:auto\nreceipt:subscribed\n\n\x00")
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := frame.NewReader(bufio.NewReaderSize(nc, 4<<10))
	for _, want := range []string{frame.CONNECTED, frame.RECEIPT} {
		f, err := r.Read()
		for err == nil && f == nil { // heart-beats
			f, err = r.Read()
		}
		if err != nil || f.Command != want {
			t.Fatalf("slow consumer: want %s, got %v %v", want, f, err)
		}
	}
	return nc
}

// roundTrips sends n small messages to dest, one at a time, each
// consumed before the next is sent (go-stomp stops sending while a
// subscription's channel is full).
func roundTrips(t *testing.T, c *stomp.Conn, dest string, n int) {
	t.Helper()
	sub, err := c.Subscribe(dest, stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	for i := range n {
		must(t, c.Send(dest, "text/plain", []byte(strconv.Itoa(i))))
		select {
		case m := <-sub.C:
			if m.Err != nil {
				t.Fatal(m.Err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("round trip: no message within 30s")
		}
	}
}

// drain consumes dest up to and including the "end" message and returns
// how many came before it.
func drain(t *testing.T, c *stomp.Conn, dest string) int {
	t.Helper()
	sub, err := c.Subscribe(dest, stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	for n := 0; ; n++ {
		select {
		case m := <-sub.C:
			if m.Err != nil {
				t.Fatal(m.Err)
			}
			if string(m.Body) == "end" {
				return n
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("draining: no message within 30s after %d", n)
		}
	}
}

// watchPeak samples the anonymous RSS of process pid every 100 ms on a goroutine
// until the returned function is called, which stops it and returns the
// highest sample.
func watchPeak(pid int) func() int64 {
	var (
		mu   sync.Mutex
		top  int64
		stop = make(chan struct{})
		done = make(chan struct{})
	)
	sample := func() {
		n, _, _ := rssOf(pid) // 0 on an error: the test reads the RSS itself too
		mu.Lock()
		top = max(top, n)
		mu.Unlock()
	}
	go func() { // owner: the returned function
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			sample()
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	return func() int64 {
		close(stop)
		<-done
		sample()
		mu.Lock()
		defer mu.Unlock()
		return top
	}
}

// rssOf is the resident set size in bytes of process pid: anon is its
// anonymous memory (RssAnon: the Go heap, stacks, the runtime), file its
// file-backed pages (RssFile: the executable and the journal's memory
// map, which the kernel may drop and read back at will).
func rssOf(pid int) (anon, file int64, err error) {
	if pid == 0 {
		return 0, 0, errors.New("the broker process is not running")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("read broker status: %w", err)
	}
	found := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		for name, into := range map[string]*int64{"RssAnon:": &anon, "RssFile:": &file} {
			v, ok := strings.CutPrefix(line, name)
			if !ok {
				continue
			}
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("parse %s %q: %w", name, v, err)
			}
			*into = kb << 10
			found++
		}
	}
	if found != 2 {
		return 0, 0, errors.New("no RssAnon and RssFile in the broker's status")
	}
	return anon, file, nil
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
