package broker

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
)

// startBroker runs a broker on a free port for the test's lifetime.
func startBroker(t testing.TB, cfg Config) *Broker {
	t.Helper()
	b, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func dial(t testing.TB, b *Broker, opts ...func(*stomp.Conn) error) *stomp.Conn {
	t.Helper()
	c, err := stomp.Dial("tcp", b.Addr().String(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.MustDisconnect() })
	return c
}

func subscribe(t testing.TB, c *stomp.Conn, dest string, ack stomp.AckMode, opts ...func(*frame.Frame) error) *stomp.Subscription {
	t.Helper()
	s, err := c.Subscribe(dest, ack, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func send(t testing.TB, c *stomp.Conn, dest, body string, opts ...func(*frame.Frame) error) {
	t.Helper()
	if err := c.Send(dest, "text/plain", []byte(body), append(opts, stomp.SendOpt.Receipt)...); err != nil {
		t.Fatal(err)
	}
}

func recv(t testing.TB, s *stomp.Subscription) *stomp.Message {
	t.Helper()
	select {
	case m, ok := <-s.C:
		if !ok || m.Err != nil {
			t.Fatalf("subscription ended: %v", m)
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
	}
	return nil
}

func noMessage(t testing.TB, s *stomp.Subscription, wait time.Duration) {
	t.Helper()
	select {
	case m := <-s.C:
		t.Fatalf("unexpected message %q", m.Body)
	case <-time.After(wait):
	}
}

var persistent = stomp.SendOpt.Header("persistent", "true")

// rawConn speaks STOMP by hand, for protocol-level tests.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	r  *frame.Reader
}

func dialRaw(t testing.TB, b *Broker) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", b.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return &rawConn{t: t, nc: nc, r: frame.NewReader(bufio.NewReader(nc))}
}

func (r *rawConn) write(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.nc, s); err != nil {
		r.t.Fatal(err)
	}
}

// read returns the next frame, skipping heart-beats; nil at EOF.
func (r *rawConn) read() *frame.Frame {
	r.t.Helper()
	_ = r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := r.r.Read()
		if err != nil {
			if err == io.EOF || strings.Contains(err.Error(), "reset") {
				return nil
			}
			r.t.Fatalf("reading frame: %v", err)
		}
		if f != nil {
			return f
		}
	}
}

func (r *rawConn) connect(version string) *frame.Frame {
	r.t.Helper()
	r.write("CONNECT\naccept-version:" + version + "\nhost:x\n\n\x00")
	f := r.read()
	if f == nil || f.Command != frame.CONNECTED {
		r.t.Fatalf("want CONNECTED, got %v", f)
	}
	return f
}

func TestConnectNegotiation(t *testing.T) {
	t.Parallel()
	b := startBroker(t, Config{HeartBeat: 2 * time.Second})
	tests := []struct {
		accept, want string
	}{
		{"1.0", "1.0"}, {"1.1", "1.1"}, {"1.2", "1.2"}, {"1.0,1.1,1.2", "1.2"}, {"1.1,2.0", "1.1"},
	}
	for _, tc := range tests {
		t.Run(tc.accept, func(t *testing.T) {
			t.Parallel()
			r := dialRaw(t, b)
			f := r.connect(tc.accept)
			if got := f.Header.Get(frame.Version); got != tc.want {
				t.Errorf("version %q, want %q", got, tc.want)
			}
			if got := f.Header.Get(frame.Server); !strings.HasPrefix(got, "opsrunner/") {
				t.Errorf("server %q", got)
			}
			if tc.want != "1.0" && f.Header.Get(frame.HeartBeat) != "0,0" { // the client asked for none
				t.Errorf("heart-beat %q", f.Header.Get(frame.HeartBeat))
			}
		})
	}
	t.Run("no accept-version is 1.0", func(t *testing.T) {
		r := dialRaw(t, b)
		r.write("STOMP\n\n\x00")
		if f := r.read(); f.Header.Get(frame.Version) != "1.0" {
			t.Errorf("got %v", f.Header)
		}
	})
}

func TestProtocolErrors(t *testing.T) {
	t.Parallel()
	b := startBroker(t, Config{MaxFrameBytes: 1024, MaxHeaders: 8, MaxHeaderBytes: 128, Users: []User{{Login: "u", Passcode: "p", Read: []string{"*"}, Write: []string{"*"}}}})
	const hello = "CONNECT\naccept-version:1.2\nlogin:u\npasscode:p\n\n\x00"
	tests := []struct {
		name, input, want string
	}{
		{"bad login", "CONNECT\naccept-version:1.2\nlogin:u\npasscode:x\n\n\x00", "access refused"},
		{"unsupported version", "CONNECT\naccept-version:3.0\n\n\x00", "versions"},
		{"frame before CONNECT", "SEND\ndestination:/queue/a\n\n\x00", "expected CONNECT"},
		{"unknown command", hello + "FLY\n\n\x00", "unknown command"},
		{"SEND without destination", hello + "SEND\n\nx\x00", "destination"},
		{"SUBSCRIBE without id", hello + "SUBSCRIBE\ndestination:/queue/a\n\n\x00", "id"},
		{"bad ack mode", hello + "SUBSCRIBE\nid:1\ndestination:/queue/a\nack:sometimes\n\n\x00", "ack mode"},
		{"bad selector", hello + "SUBSCRIBE\nid:1\ndestination:/queue/a\nselector:a = = 1\n\n\x00", "selector"},
		{"oversized body", hello + "SEND\ndestination:/queue/a\n\n" + strings.Repeat("x", 2000) + "\x00", "larger"},
		{"oversized content-length", hello + "SEND\ndestination:/queue/a\ncontent-length:5000\n\n", "larger"},
		{"bad content-length", hello + "SEND\ndestination:/queue/a\ncontent-length:-1\n\nx\x00", "content-length"},
		{"short content-length", hello + "SEND\ndestination:/queue/a\ncontent-length:1\n\nxyz\x00", "content-length"},
		{"too many headers", hello + "SEND\ndestination:/queue/a\n" + strings.Repeat("h:v\n", 9) + "\n\x00", "headers"},
		{"header too long", hello + "SEND\ndestination:/queue/a\nh:" + strings.Repeat("v", 200) + "\n\n\x00", "too long"},
		{"bad escape", hello + "SEND\ndestination:/queue/a\nh:\\t\n\n\x00", "escape"},
		{"unknown ack id", hello + "ACK\nid:42\n\n\x00", "unknown ack id"},
		{"unknown transaction", hello + "COMMIT\ntransaction:t1\n\n\x00", "unknown transaction"},
		{"NACK in 1.0", "CONNECT\nlogin:u\npasscode:p\n\n\x00NACK\nmessage-id:1\n\n\x00", "NACK"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := dialRaw(t, b)
			r.write(tc.input)
			f := r.read()
			if f != nil && f.Command == frame.CONNECTED {
				f = r.read()
			}
			if f == nil || f.Command != frame.ERROR {
				t.Fatalf("want ERROR, got %v", f)
			}
			if msg := f.Header.Get(frame.Message); !strings.Contains(msg, tc.want) {
				t.Errorf("message %q does not mention %q", msg, tc.want)
			}
			if f := r.read(); f != nil {
				t.Errorf("connection still open after ERROR: %v", f.Command)
			}
		})
	}
}

func TestReceiptsForEveryFrame(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{"", "journal"} {
		t.Run("dir="+dir, func(t *testing.T) {
			t.Parallel()
			cfg := Config{}
			if dir != "" {
				cfg.DataDir = t.TempDir()
			}
			r := dialRaw(t, startBroker(t, cfg))
			r.connect("1.2")
			frames := []string{
				"SEND\ndestination:/queue/r\npersistent:true\nreceipt:1\n\nhi\x00",
				"SUBSCRIBE\nid:s\ndestination:/queue/other\nreceipt:2\n\n\x00",
				"BEGIN\ntransaction:t\nreceipt:3\n\n\x00",
				"ABORT\ntransaction:t\nreceipt:4\n\n\x00",
				"UNSUBSCRIBE\nid:s\nreceipt:5\n\n\x00",
				"DISCONNECT\nreceipt:6\n\n\x00",
			}
			for i, fr := range frames {
				r.write(fr)
				f := r.read()
				if f == nil || f.Command != frame.RECEIPT || f.Header.Get(frame.ReceiptId) != strconv.Itoa(i+1) {
					t.Fatalf("frame %d: want RECEIPT %d, got %v", i+1, i+1, f)
				}
			}
			if f := r.read(); f != nil {
				t.Errorf("connection open after DISCONNECT: %v", f.Command)
			}
		})
	}
}

func TestAckModes(t *testing.T) {
	t.Parallel()
	b := startBroker(t, Config{})
	tests := []struct {
		mode stomp.AckMode
		ack  []int // indexes of the 3 messages acknowledged before disconnecting
		left []string
	}{
		{stomp.AckAuto, nil, nil},
		{stomp.AckClient, []int{1}, []string{"m2"}},                 // cumulative: acks m0 and m1
		{stomp.AckClientIndividual, []int{1}, []string{"m0", "m2"}}, // only m1
	}
	for i, tc := range tests {
		t.Run(fmt.Sprint(tc.mode), func(t *testing.T) {
			t.Parallel()
			dest := fmt.Sprintf("/queue/ackmodes-%d", i)
			c := dial(t, b)
			for j := range 3 {
				send(t, c, dest, fmt.Sprintf("m%d", j))
			}
			c1, err := stomp.Dial("tcp", b.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			s := subscribe(t, c1, dest, tc.mode)
			var ms []*stomp.Message
			for range 3 {
				ms = append(ms, recv(t, s))
			}
			for _, j := range tc.ack {
				if err := c1.Ack(ms[j]); err != nil {
					t.Fatal(err)
				}
			}
			if err := c1.Disconnect(); err != nil {
				t.Fatal(err)
			}
			s2 := subscribe(t, c, dest, stomp.AckAuto)
			for _, want := range tc.left {
				m := recv(t, s2)
				if string(m.Body) != want || m.Header.Get("redelivered") != "true" {
					t.Errorf("got %q redelivered=%q, want %q redelivered", m.Body, m.Header.Get("redelivered"), want)
				}
			}
			noMessage(t, s2, 100*time.Millisecond)
		})
	}
}

func TestNackRedeliversWithStableID(t *testing.T) {
	t.Parallel()
	b := startBroker(t, Config{})
	for _, v := range []string{"1.1", "1.2"} {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			dest := "/queue/nack-" + v
			c := dial(t, b, stomp.ConnOpt.AcceptVersion(stomp.Version(v)))
			send(t, c, dest, "x")
			s := subscribe(t, c, dest, stomp.AckClientIndividual)
			m1 := recv(t, s)
			if m1.Header.Get("delivery-count") != "1" || m1.Header.Get("redelivered") != "" {
				t.Errorf("first delivery headers %v", m1.Header)
			}
			if err := c.Nack(m1); err != nil {
				t.Fatal(err)
			}
			m2 := recv(t, s)
			if m2.Header.Get("message-id") != m1.Header.Get("message-id") {
				t.Errorf("message-id changed: %q → %q", m1.Header.Get("message-id"), m2.Header.Get("message-id"))
			}
			if m2.Header.Get("delivery-count") != "2" || m2.Header.Get("redelivered") != "true" {
				t.Errorf("redelivery headers %v", m2.Header)
			}
			if err := c.Ack(m2); err != nil {
				t.Fatal(err)
			}
			noMessage(t, s, 100*time.Millisecond)
		})
	}
}

func TestTransactions(t *testing.T) {
	t.Parallel()
	b := startBroker(t, Config{DataDir: t.TempDir()})
	c := dial(t, b)
	send(t, c, "/queue/tx-in", "in1", persistent)
	send(t, c, "/queue/tx-in", "in2", persistent)
	s := subscribe(t, c, "/queue/tx-in", stomp.AckClientIndividual, stomp.SubscribeOpt.Header("prefetch-count", "1"))

	// abort: neither the send nor the ack happen
	m := recv(t, s)
	tx := c.Begin()
	must(t, tx.Send("/queue/tx-out", "text/plain", []byte("aborted"), persistent))
	must(t, tx.Ack(m))
	must(t, tx.AbortWithReceipt())
	noMessage(t, s, 100*time.Millisecond) // in1 still held (prefetch 1), not acked
	if st, _ := b.QueueStats("/queue/tx-out"); st.Pending != 0 {
		t.Fatalf("aborted send applied: %+v", st)
	}

	// commit: the send and the ack apply together
	tx = c.Begin()
	must(t, tx.Send("/queue/tx-out", "text/plain", []byte("committed"), persistent))
	must(t, tx.Ack(m))
	if st, _ := b.QueueStats("/queue/tx-out"); st.Pending != 0 {
		t.Fatal("send applied before COMMIT")
	}
	must(t, tx.CommitWithReceipt())
	if st, _ := b.QueueStats("/queue/tx-out"); st.Pending != 1 {
		t.Fatalf("commit did not apply the send: %+v", st)
	}
	if m2 := recv(t, s); string(m2.Body) != "in2" {
		t.Fatalf("after committed ack got %q", m2.Body)
	}

	// a connection dropped mid-transaction applies nothing
	c2, err := stomp.Dial("tcp", b.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tx2 := c2.Begin()
	must(t, tx2.Send("/queue/tx-out", "text/plain", []byte("dropped")))
	must(t, c2.Disconnect())
	s2 := subscribe(t, c, "/queue/tx-out", stomp.AckAuto)
	if m := recv(t, s2); string(m.Body) != "committed" {
		t.Fatalf("got %q", m.Body)
	}
	noMessage(t, s2, 100*time.Millisecond)
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestCompetingConsumersAndPrefetch(t *testing.T) {
	t.Parallel()
	b := startBroker(t, Config{})
	c := dial(t, b)
	const dest = "/queue/compete"
	c1, c2 := dial(t, b), dial(t, b)
	s1 := subscribe(t, c1, dest, stomp.AckClientIndividual, stomp.SubscribeOpt.Header("prefetch-count", "2"))
	s2 := subscribe(t, c2, dest, stomp.AckClientIndividual, stomp.SubscribeOpt.Header("activemq.prefetchSize", "3"))
	for i := range 10 {
		send(t, c, dest, strconv.Itoa(i))
	}
	var got1, got2 []*stomp.Message
	for range 2 {
		got1 = append(got1, recv(t, s1))
	}
	for range 3 {
		got2 = append(got2, recv(t, s2))
	}
	noMessage(t, s1, 50*time.Millisecond)
	noMessage(t, s2, 50*time.Millisecond)
	if st, _ := b.QueueStats(dest); st.InFlight != 5 || st.Pending != 5 {
		t.Fatalf("stats %+v, want 5 in flight (prefetch 2+3), 5 pending", st)
	}
	must(t, c1.Ack(got1[0]))
	recv(t, s1)
	must(t, c2.Ack(got2[0]))
	recv(t, s2)
}

func TestTopicsAndDurableSubscriptions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := startBroker(t, Config{DataDir: dir})
	c := dial(t, b)
	sub := func(c *stomp.Conn) *stomp.Subscription {
		return subscribe(t, c, "/topic/news", stomp.AckClientIndividual,
			stomp.SubscribeOpt.Id("d1"), stomp.SubscribeOpt.Header("durable", "true"))
	}
	d := dial(t, b, stomp.ConnOpt.Header("client-id", "agent-1"))
	sd := sub(d)
	waitFor(t, func() bool { // SUBSCRIBE has no receipt in go-stomp; wait until applied
		b.mu.Lock()
		defer b.mu.Unlock()
		ds := b.durables["agent-1:d1"]
		return ds != nil && ds.active != nil
	})
	plain1 := subscribe(t, c, "/topic/news", stomp.AckAuto)
	plain2 := subscribe(t, c, "/topic/news", stomp.AckAuto, stomp.SubscribeOpt.Header("selector", "kind = 'sport'"))
	send(t, c, "/topic/news", "n1", persistent, stomp.SendOpt.Header("kind", "sport"))
	for _, s := range []*stomp.Subscription{sd, plain1, plain2} {
		if m := recv(t, s); string(m.Body) != "n1" {
			t.Fatalf("got %q", m.Body)
		}
	}
	must(t, d.Disconnect()) // durable subscriber away; n1 unacked goes back

	send(t, c, "/topic/news", "n2", persistent, stomp.SendOpt.Header("kind", "politics"))
	recv(t, plain1)
	noMessage(t, plain2, 50*time.Millisecond)

	// the durable subscription survives a broker restart
	must(t, b.Close())
	b2 := startBroker(t, Config{DataDir: dir})
	d2 := dial(t, b2, stomp.ConnOpt.Header("client-id", "agent-1"))
	sd2 := subscribe(t, d2, "/topic/news", stomp.AckClientIndividual,
		stomp.SubscribeOpt.Id("d1"), stomp.SubscribeOpt.Header("durable", "true"))
	for _, want := range []string{"n1", "n2"} {
		m := recv(t, sd2)
		if string(m.Body) != want {
			t.Fatalf("got %q want %q", m.Body, want)
		}
		must(t, d2.Ack(m))
	}
	// UNSUBSCRIBE with durable:true deletes it
	must(t, sd2.Unsubscribe(stomp.SubscribeOpt.Header("durable", "true")))
	c2 := dial(t, b2)
	send(t, c2, "/topic/news", "n3", persistent)
	b2.mu.Lock()
	n := len(b2.durables)
	b2.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d durable subscriptions left", n)
	}
}

func TestActiveMQDurableNaming(t *testing.T) {
	t.Parallel()
	b := startBroker(t, Config{})
	c := dial(t, b)
	opts := []func(*frame.Frame) error{stomp.SubscribeOpt.Header("activemq.subscriptionName", "s1")}
	d := dial(t, b, stomp.ConnOpt.Header("client-id", "cid"))
	subscribe(t, d, "/topic/amq", stomp.AckAuto, opts...)
	must(t, d.Disconnect())
	send(t, c, "/topic/amq", "while away")
	d2 := dial(t, b, stomp.ConnOpt.Header("client-id", "cid"))
	if m := recv(t, subscribe(t, d2, "/topic/amq", stomp.AckAuto, opts...)); string(m.Body) != "while away" {
		t.Fatalf("got %q", m.Body)
	}
}

func TestSelectorsOnQueues(t *testing.T) {
	t.Parallel()
	b := startBroker(t, Config{})
	c := dial(t, b)
	const dest = "/queue/sel"
	big := subscribe(t, c, dest, stomp.AckAuto, stomp.SubscribeOpt.Header("selector", "amount > 100 AND region IN ('eu','us')"))
	small := subscribe(t, c, dest, stomp.AckAuto, stomp.SubscribeOpt.Header("selector", "amount <= 100 OR amount IS NULL"))
	send(t, c, dest, "a", stomp.SendOpt.Header("amount", "150"), stomp.SendOpt.Header("region", "eu"))
	send(t, c, dest, "b", stomp.SendOpt.Header("amount", "50"))
	send(t, c, dest, "c")
	send(t, c, dest, "d", stomp.SendOpt.Header("amount", "150"), stomp.SendOpt.Header("region", "apac")) // no one
	if m := recv(t, big); string(m.Body) != "a" {
		t.Errorf("big got %q", m.Body)
	}
	for _, want := range []string{"b", "c"} {
		if m := recv(t, small); string(m.Body) != want {
			t.Errorf("small got %q want %q", m.Body, want)
		}
	}
	noMessage(t, big, 50*time.Millisecond)
	if st, _ := b.QueueStats(dest); st.Pending != 1 {
		t.Errorf("stats %+v, want the unmatched message pending", st)
	}
}

func TestPriorityAndExpiry(t *testing.T) {
	t.Parallel()
	b := startBroker(t, Config{})
	c := dial(t, b)
	const dest = "/queue/prio"
	past := strconv.FormatInt(time.Now().Add(-time.Second).UnixMilli(), 10)
	future := strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)
	send(t, c, dest, "low1", stomp.SendOpt.Header("priority", "1"))
	send(t, c, dest, "expired", stomp.SendOpt.Header("priority", "9"), stomp.SendOpt.Header("expires", past))
	send(t, c, dest, "high", stomp.SendOpt.Header("priority", "8"), stomp.SendOpt.Header("expires", future))
	send(t, c, dest, "default")
	send(t, c, dest, "low2", stomp.SendOpt.Header("priority", "1"))
	s := subscribe(t, c, dest, stomp.AckAuto)
	for _, want := range []string{"high", "default", "low1", "low2"} {
		if m := recv(t, s); string(m.Body) != want {
			t.Errorf("got %q want %q", m.Body, want)
		}
	}
	noMessage(t, s, 50*time.Millisecond)
}

func TestMaxDeliveriesDeadLetters(t *testing.T) {
	t.Parallel()
	b := startBroker(t, Config{MaxDeliveries: 2, DataDir: t.TempDir()})
	c := dial(t, b)
	send(t, c, "/queue/poison", "bad", persistent)
	s := subscribe(t, c, "/queue/poison", stomp.AckClientIndividual)
	must(t, c.Nack(recv(t, s)))
	must(t, c.Nack(recv(t, s)))
	noMessage(t, s, 50*time.Millisecond)
	dlq := subscribe(t, c, "/queue/poison.DLQ", stomp.AckAuto)
	m := recv(t, dlq)
	if string(m.Body) != "bad" || m.Header.Get("original-destination") != "/queue/poison" {
		t.Errorf("dead letter %q %v", m.Body, m.Header)
	}
}

func TestPersistenceAcrossRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// a small memory budget makes most bodies live on disk only
	cfg := Config{DataDir: dir, MaxMemoryBytes: 2000}
	b := startBroker(t, cfg)
	c := dial(t, b)
	const n = 200
	body := strings.Repeat("x", 100)
	for i := range n {
		opts := []func(*frame.Frame) error{persistent}
		if i == n-1 {
			opts = append(opts, stomp.SendOpt.Receipt)
		}
		must(t, c.Send("/queue/keep", "text/plain", []byte(fmt.Sprint(i, body)), opts...))
	}
	send(t, c, "/queue/keep", "transient") // not persistent: gone after restart
	b.mu.Lock()
	mem := b.memBytes
	b.mu.Unlock()
	if mem > 2000+200 {
		t.Errorf("memBytes %d above the 2000-byte budget", mem)
	}
	must(t, c.Disconnect())
	must(t, b.Close())

	b2 := startBroker(t, cfg)
	c2 := dial(t, b2)
	// A small prefetch: go-stomp stalls when one goroutine both reads a full
	// subscription channel (16) and acks.
	s := subscribe(t, c2, "/queue/keep", stomp.AckClientIndividual, stomp.SubscribeOpt.Header("prefetch-count", "8"))
	for i := range n {
		m := recv(t, s)
		if string(m.Body) != fmt.Sprint(i, body) {
			t.Fatalf("message %d: got %q", i, m.Body)
		}
		must(t, c2.Ack(m))
	}
	noMessage(t, s, 50*time.Millisecond)
}

func TestHeartBeats(t *testing.T) {
	t.Parallel()
	b := startBroker(t, Config{HeartBeat: 100 * time.Millisecond})
	t.Run("silent client is disconnected", func(t *testing.T) {
		t.Parallel()
		r := dialRaw(t, b)
		r.write("CONNECT\naccept-version:1.2\nheart-beat:100,0\n\n\x00")
		start := time.Now()
		if f := r.read(); f.Command != frame.CONNECTED {
			t.Fatal(f.Command)
		}
		if f := r.read(); f != nil {
			t.Fatalf("got %v", f.Command)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("disconnected after %v", d)
		}
	})
	t.Run("server sends heart-beats", func(t *testing.T) {
		t.Parallel()
		r := dialRaw(t, b)
		r.write("CONNECT\naccept-version:1.2\nheart-beat:0,100\n\n\x00")
		r.read()
		_ = r.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 1)
		if _, err := r.nc.Read(buf); err != nil || buf[0] != '\n' {
			t.Fatalf("want EOL heart-beat, got %q %v", buf, err)
		}
	})
}

func TestSlowConsumerDoesNotStallOthers(t *testing.T) {
	t.Parallel()
	b := startBroker(t, Config{MaxPendingBytes: 64 << 10})
	// a consumer that never reads
	r := dialRaw(t, b)
	r.connect("1.2")
	r.write("SUBSCRIBE\nid:1\ndestination:/topic/firehose\n\n\x00")
	c := dial(t, b)
	body := strings.Repeat("y", 10<<10)
	for range 300 { // 3 MiB, far beyond what the socket buffers hold
		must(t, c.Send("/topic/firehose", "text/plain", []byte(body)))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c2 := dial(t, b)
		s := subscribe(t, c2, "/queue/other", stomp.AckAuto)
		send(t, c2, "/queue/other", "fine")
		recv(t, s)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("other clients stalled by a slow consumer")
	}
}

func TestCloseIsIdempotentAndClean(t *testing.T) {
	t.Parallel()
	b, err := Start(Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := stomp.Dial("tcp", b.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	must(t, c.Send("/queue/x", "", []byte("a"), persistent))
	must(t, b.Close())
	must(t, b.Close())
	if err := c.Send("/queue/x", "", []byte("b"), stomp.SendOpt.Receipt); err == nil {
		t.Error("send after Close succeeded")
	}
}
