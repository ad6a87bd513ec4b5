package conformance

import (
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/go-stomp/stomp/v3"

	"github.com/opsrunner/opsrunner/internal/brokercaps"
	"github.com/opsrunner/opsrunner/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// brokers are the implementations under test; each starts once per binary.
var brokers = []struct {
	name, kind string
	start      func(testing.TB) *testenv.Broker
}{
	{brokercaps.Embedded, brokercaps.Embedded, testenv.Embedded},
	// The embedded broker with users, logged in as one allowed everything:
	// authentication changes nothing else.
	{"embedded-with-users", brokercaps.Embedded, testenv.EmbeddedWithUsers},
	{brokercaps.ActiveMQ, brokercaps.ActiveMQ, testenv.ActiveMQ},
	{brokercaps.RabbitMQ, brokercaps.RabbitMQ, testenv.RabbitMQ},
}

// behaviours run in parallel on a shared broker, each on its own destinations.
var behaviours = []struct {
	name string
	run  func(t *testing.T, e env)
}{
	{"SendReceive", testSendReceive},
	{"AckAuto", testAckAuto},
	{"AckClientIsCumulative", testAckClient},
	{"AckClientIndividual", testAckClientIndividual},
	{"Nack", testNack},
	{"DisconnectGivesBack", testDisconnectGivesBack},
	{"TxCommitAppliesSendsAndAcks", testTxCommit},
	{"TxAbortDiscards", testTxAbort},
	{"TxConnectionLossAppliesNothing", testTxConnectionLoss},
	{"DurableTopicKeepsMessagesWhileAway", testDurableTopic},
	{"Selector", testSelector},
	{"PrefetchOne", testPrefetchOne},
}

// restarts run one after another once the behaviours are done, because
// they stop the shared broker.
var restarts = []struct {
	name string
	run  func(t *testing.T, e env)
}{
	{"PersistentSurvivesRestart", testPersistentSurvivesRestart},
	{"CommitSurvivesKill9", testCommitSurvivesKill9},
}

func TestBrokers(t *testing.T) {
	for _, br := range brokers {
		t.Run(br.name, func(t *testing.T) {
			t.Parallel()
			b := br.start(t)
			e := env{b: b, caps: brokercaps.For(br.kind)}
			t.Run("Detect", func(t *testing.T) {
				c := e.dial(t)
				if got := brokercaps.Detect(c.Server()); got != br.kind {
					t.Errorf("Detect(%q) = %q, want %q", c.Server(), got, br.kind)
				}
			})
			t.Run("behaviours", func(t *testing.T) {
				for _, bh := range behaviours {
					t.Run(bh.name, func(t *testing.T) {
						t.Parallel()
						bh.run(t, e)
					})
				}
			})
			for _, r := range restarts {
				t.Run(r.name, func(t *testing.T) { r.run(t, e) })
			}
		})
	}
}

func testSendReceive(t *testing.T, e env) {
	q := name(t, "queue")
	c := e.dial(t)
	sub := subscribe(t, c, q, stomp.AckAuto)
	send(t, c, q, []string{"one", "two", "three"}, "x-opsrunner-test", "yes")
	bodies, msgs := receiveBodies(t, sub, 3)
	if !slices.Equal(bodies, []string{"one", "two", "three"}) {
		t.Fatalf("received %q, want one, two, three in order", bodies)
	}
	for _, m := range msgs {
		if m.Header.Get("x-opsrunner-test") != "yes" {
			t.Errorf("user header lost: %v", headers(m))
		}
		if m.Header.Get("message-id") == "" || m.Header.Get("destination") == "" {
			t.Errorf("message-id or destination missing: %v", headers(m))
		}
	}
}

func testAckAuto(t *testing.T, e env) {
	q := name(t, "queue")
	c := e.dial(t)
	send(t, c, q, []string{"a"})
	receive(t, subscribe(t, c, q, stomp.AckAuto))
	c.drop()
	c2 := e.dial(t)
	expectNone(t, subscribe(t, c2, q, stomp.AckAuto), "auto-acked message came back")
}

func testAckClient(t *testing.T, e env) {
	q := name(t, "queue")
	c := e.dial(t)
	send(t, c, q, []string{"1", "2", "3"})
	_, msgs := receiveBodies(t, subscribe(t, c, q, stomp.AckClient), 3)
	ack(t, c, msgs[1]) // acknowledges 1 and 2
	if err := c.Disconnect(); err != nil {
		t.Fatalf("disconnect: %v", err)
	}
	c2 := e.dial(t)
	sub := subscribe(t, c2, q, stomp.AckClientIndividual)
	again := receive(t, sub)
	e.checkRedelivery(t, msgs[2], again)
	expectNone(t, sub, "a message covered by the cumulative ACK came back")
}

func testAckClientIndividual(t *testing.T, e env) {
	q := name(t, "queue")
	c := e.dial(t)
	send(t, c, q, []string{"1", "2", "3"})
	_, msgs := receiveBodies(t, subscribe(t, c, q, stomp.AckClientIndividual), 3)
	ack(t, c, msgs[1]) // acknowledges only 2
	if err := c.Disconnect(); err != nil {
		t.Fatalf("disconnect: %v", err)
	}
	c2 := e.dial(t)
	sub := subscribe(t, c2, q, stomp.AckClientIndividual)
	bodies, again := receiveBodies(t, sub, 2)
	sort.Strings(bodies)
	if !slices.Equal(bodies, []string{"1", "3"}) {
		t.Fatalf("given back %q, want 1 and 3", bodies)
	}
	for _, m := range again {
		first := msgs[0]
		if string(m.Body) == "3" {
			first = msgs[2]
		}
		e.checkRedelivery(t, first, m)
	}
	expectNone(t, sub, "the individually acked message came back")
}

func testNack(t *testing.T, e env) {
	q := name(t, "queue")
	c := e.dial(t)
	sub := subscribe(t, c, q, stomp.AckClientIndividual)
	send(t, c, q, []string{"nack-me " + q})
	first := receive(t, sub)
	if err := c.Nack(first); err != nil {
		t.Fatalf("nack: %v", err)
	}
	if e.caps.NackRequeues {
		again := receive(t, sub)
		e.checkRedelivery(t, first, again)
		ack(t, c, again)
		return
	}
	expectNone(t, sub, "NACK requeued although capability NackRequeues is false")
	if e.caps.NackDeadLetter == "" {
		t.Fatal("capability NackRequeues is false but NackDeadLetter is empty")
	}
	// The dead-letter queue is shared: look for our body among its messages.
	dlq := subscribe(t, c, e.caps.NackDeadLetter, stomp.AckClientIndividual)
	for {
		m := receive(t, dlq)
		ack(t, c, m)
		if string(m.Body) == string(first.Body) {
			return
		}
	}
}

func testDisconnectGivesBack(t *testing.T, e env) {
	if !e.caps.RequeueByDisconnect {
		t.Skip("capability RequeueByDisconnect is false")
	}
	q := name(t, "queue")
	c := e.dial(t)
	send(t, c, q, []string{"crash"})
	first := receive(t, subscribe(t, c, q, stomp.AckClientIndividual))
	c.drop()
	c2 := e.dial(t)
	sub := subscribe(t, c2, q, stomp.AckClientIndividual)
	again := receive(t, sub)
	e.checkRedelivery(t, first, again)
	ack(t, c2, again)
}

// txSetup receives one message from in on a client-individual subscription
// and opens a transaction that sends to out and ACKs it. A watcher on out
// proves the send is not visible before commit.
func txSetup(t *testing.T, e env) (c *client, tx *stomp.Transaction, in, out string, watch *stomp.Subscription, m *stomp.Message) {
	in, out = name(t, "queue")+".in", name(t, "queue")+".out"
	c = e.dial(t)
	w := e.dial(t)
	watch = subscribe(t, w, out, stomp.AckAuto)
	send(t, c, in, []string{"input"})
	m = receive(t, subscribe(t, c, in, stomp.AckClientIndividual))
	tx, err := c.BeginWithError()
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	if err := tx.Send(out, "text/plain", []byte("output"), stomp.SendOpt.Header("persistent", "true")); err != nil {
		t.Fatalf("send in tx: %v", err)
	}
	if err := tx.Ack(m); err != nil {
		t.Fatalf("ack in tx: %v", err)
	}
	expectNone(t, watch, "a transacted send was delivered before COMMIT")
	return c, tx, in, out, watch, m
}

func testTxCommit(t *testing.T, e env) {
	c, tx, in, _, watch, _ := txSetup(t, e)
	if err := tx.CommitWithReceipt(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if got := receive(t, watch); string(got.Body) != "output" {
		t.Fatalf("after commit got %q, want output", got.Body)
	}
	c.drop()
	c2 := e.dial(t)
	expectNone(t, subscribe(t, c2, in, stomp.AckClientIndividual), "the message acked in a committed transaction came back")
}

func testTxAbort(t *testing.T, e env) {
	c, tx, in, _, watch, m := txSetup(t, e)
	if err := tx.AbortWithReceipt(); err != nil {
		t.Fatalf("abort: %v", err)
	}
	expectNone(t, watch, "a send of an aborted transaction was delivered")
	c.drop()
	c2 := e.dial(t)
	again := receive(t, subscribe(t, c2, in, stomp.AckClientIndividual))
	e.checkRedelivery(t, m, again)
}

func testTxConnectionLoss(t *testing.T, e env) {
	c, _, in, _, watch, m := txSetup(t, e)
	c.drop()
	c2 := e.dial(t)
	again := receive(t, subscribe(t, c2, in, stomp.AckClientIndividual))
	e.checkRedelivery(t, m, again)
	expectNone(t, watch, "a send of a transaction cut by connection loss was delivered")
}

func testDurableTopic(t *testing.T, e env) {
	topic := name(t, "topic")
	subName := "sub-" + topic[len(topic)-8:]
	clientID := "client-" + topic[len(topic)-8:]
	connect := func() (*client, *stomp.Subscription) {
		var opts []func(*stomp.Conn) error
		for k, v := range e.caps.DurableConnectHeaders(clientID) {
			opts = append(opts, stomp.ConnOpt.Header(k, v))
		}
		c := e.dial(t, opts...)
		return c, subscribe(t, c, topic, stomp.AckClientIndividual, e.caps.DurableSubscribeOptions(subName, clientID)...)
	}
	pub := e.dial(t)
	c, sub := connect()
	send(t, pub, topic, []string{"while-here"})
	ack(t, c, receive(t, sub))
	if err := c.Disconnect(); err != nil {
		t.Fatalf("disconnect: %v", err)
	}
	send(t, pub, topic, []string{"while-away"})
	c2, sub2 := connect()
	m := receive(t, sub2)
	if string(m.Body) != "while-away" {
		t.Fatalf("durable subscriber got %q, want while-away", m.Body)
	}
	ack(t, c2, m)
}

func testSelector(t *testing.T, e env) {
	q := name(t, "queue")
	c := e.dial(t)
	sub := subscribe(t, c, q, stomp.AckAuto, stompHeader("selector", "color = 'red' AND size IN ('L', 'XL')"))
	send(t, c, q, []string{"red-L"}, "color", "red", "size", "L")
	send(t, c, q, []string{"blue-L"}, "color", "blue", "size", "L")
	send(t, c, q, []string{"red-S"}, "color", "red", "size", "S")
	send(t, c, q, []string{"red-XL"}, "color", "red", "size", "XL")
	want := []string{"red-L", "red-XL"}
	if !e.caps.Selectors {
		want = []string{"red-L", "blue-L", "red-S", "red-XL"}
	}
	got, _ := receiveBodies(t, sub, len(want))
	if !slices.Equal(got, want) {
		t.Fatalf("selector (capability %v) delivered %q, want %q", e.caps.Selectors, got, want)
	}
	expectNone(t, sub, "a message not matching the selector was delivered")
}

func testPrefetchOne(t *testing.T, e env) {
	q := name(t, "queue")
	c := e.dial(t)
	send(t, c, q, []string{"1", "2", "3"})
	sub := subscribe(t, c, q, stomp.AckClientIndividual, e.caps.PrefetchOption(1))
	first := receive(t, sub)
	expectNone(t, sub, "a second message was sent while one was unacked with prefetch 1")
	ack(t, c, first)
	if m := receive(t, sub); string(m.Body) != "2" {
		t.Fatalf("after ack got %q, want 2", m.Body)
	}
}

func testPersistentSurvivesRestart(t *testing.T, e env) {
	q := name(t, "queue")
	c := e.dial(t)
	send(t, c, q, []string{"kept"})
	c.drop()
	e.b.Restart(t)
	c2 := e.dial(t)
	if m := receive(t, subscribe(t, c2, q, stomp.AckClientIndividual)); string(m.Body) != "kept" {
		t.Fatalf("after restart got %q, want kept", m.Body)
	}
}

func testCommitSurvivesKill9(t *testing.T, e env) {
	in, out := name(t, "queue")+".in", name(t, "queue")+".out"
	c := e.dial(t)
	send(t, c, in, []string{"input", "second"})
	m := receive(t, subscribe(t, c, in, stomp.AckClientIndividual, e.caps.PrefetchOption(1)))
	tx, err := c.BeginWithError()
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	if err := tx.Send(out, "text/plain", []byte("output"), stomp.SendOpt.Header("persistent", "true")); err != nil {
		t.Fatalf("send in tx: %v", err)
	}
	if err := tx.Ack(m); err != nil {
		t.Fatalf("ack in tx: %v", err)
	}
	if err := tx.CommitWithReceipt(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if !e.caps.DurableCommit {
		t.Skip("capability DurableCommit is false: a COMMIT receipt does not promise the transaction is on disk")
	}
	e.b.Kill9()
	if err := e.b.Start(); err != nil {
		t.Fatalf("start after kill -9: %v", err)
	}
	c2 := e.dial(t)
	if got := receive(t, subscribe(t, c2, out, stomp.AckAuto)); string(got.Body) != "output" {
		t.Fatalf("committed send after crash: got %q, want output", got.Body)
	}
	rest := subscribe(t, c2, in, stomp.AckAuto)
	if got := receive(t, rest); string(got.Body) != "second" {
		t.Fatalf("after crash %s gave %q first, want second (input was acked by the commit)", in, got.Body)
	}
	expectNone(t, rest, "the message acked by a committed transaction came back after kill -9")
}

// With users, a wrong passcode and an unknown login are refused with the
// ERROR clients know (message:access refused), as RabbitMQ's and
// ActiveMQ's brokers refuse them.
func TestEmbeddedWithUsersRefusesWrongLogins(t *testing.T) {
	b := testenv.EmbeddedWithUsers(t)
	for _, login := range [][2]string{{testenv.EmbeddedLogin, "wrong"}, {"nobody", testenv.EmbeddedPasscode}, {"", ""}} {
		c, err := stomp.Dial("tcp", b.Addr, stomp.ConnOpt.Login(login[0], login[1]), stomp.ConnOpt.Host(b.Host), testenv.QuietLogs())
		if err == nil {
			c.MustDisconnect()
			t.Fatalf("login %q/%q was accepted", login[0], login[1])
		}
		if !strings.Contains(err.Error(), "access refused") {
			t.Errorf("login %q/%q: %v, want access refused", login[0], login[1], err)
		}
	}
}
