package triggers_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/internal/brokercaps"
	"github.com/opsrunner/opsrunner/internal/testenv"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
	"github.com/opsrunner/opsrunner/triggers"
)

// cut says where a cutProxy ends a connection at its next COMMIT.
type cut int

const (
	cutNone cut = iota
	// cutCommit drops the COMMIT and ends the connection: the broker
	// never sees it and discards the transaction.
	cutCommit
	// cutReceipt forwards the COMMIT and ends the connection when the
	// broker's RECEIPT for it comes back, without forwarding it: the
	// broker applied the commit, the client never hears so.
	cutReceipt
)

// cutProxy forwards STOMP connections to a broker, frame by frame; armed,
// it ends the first connection that commits a transaction, as arm says.
type cutProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	armed cut
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.serve(&wg)
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return p
}

// arm makes the next COMMIT end its connection as c says; it fires once.
func (p *cutProxy) arm(c cut) {
	p.mu.Lock()
	p.armed = c
	p.mu.Unlock()
}

// fire disarms the proxy and returns how it was armed.
func (p *cutProxy) fire() cut {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.armed
	p.armed = cutNone
	return c
}

func (p *cutProxy) serve(wg *sync.WaitGroup) {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed at cleanup
		}
		broker, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		pc := &proxiedConn{p: p, client: client, broker: broker}
		wg.Add(2)
		go func() { defer wg.Done(); pc.upstream() }()
		go func() { defer wg.Done(); pc.downstream() }()
	}
}

// proxiedConn is one client connection and its broker connection.
type proxiedConn struct {
	p              *cutProxy
	client, broker net.Conn

	mu      sync.Mutex
	receipt string // the RECEIPT that ends the connection (cutReceipt)
}

func (c *proxiedConn) close() {
	c.client.Close()
	c.broker.Close()
}

// upstream forwards the client's frames, cutting at an armed COMMIT.
func (c *proxiedConn) upstream() {
	defer c.close()
	r := bufio.NewReader(c.client)
	for {
		raw, cmd, hdr, err := readRawFrame(r)
		if err != nil {
			return
		}
		if cmd == "COMMIT" {
			switch c.p.fire() {
			case cutCommit:
				return
			case cutReceipt:
				c.mu.Lock()
				c.receipt = hdr["receipt"]
				c.mu.Unlock()
			}
		}
		if _, err := c.broker.Write(raw); err != nil {
			return
		}
	}
}

// downstream forwards the broker's frames, cutting at the awaited RECEIPT.
func (c *proxiedConn) downstream() {
	defer c.close()
	r := bufio.NewReader(c.broker)
	for {
		raw, cmd, hdr, err := readRawFrame(r)
		if err != nil {
			return
		}
		if cmd == "RECEIPT" {
			c.mu.Lock()
			awaited := c.receipt != "" && hdr["receipt-id"] == c.receipt
			c.mu.Unlock()
			if awaited {
				return
			}
		}
		if _, err := c.client.Write(raw); err != nil {
			return
		}
	}
}

// readRawFrame reads one STOMP frame, or one heart-beat EOL (cmd ""), and
// returns its bytes as read, its command and its headers (first value
// wins; escapes are left as they are: the headers read here need none).
func readRawFrame(r *bufio.Reader) (raw []byte, cmd string, hdr map[string]string, err error) {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return nil, "", nil, err
	}
	raw = line
	cmd = string(bytes.TrimRight(line, "\r\n"))
	if cmd == "" {
		return raw, "", nil, nil
	}
	hdr = map[string]string{}
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return nil, "", nil, err
		}
		raw = append(raw, line...)
		kv := string(bytes.TrimRight(line, "\r\n"))
		if kv == "" {
			break
		}
		if k, v, ok := strings.Cut(kv, ":"); ok {
			if _, seen := hdr[k]; !seen {
				hdr[k] = v
			}
		}
	}
	if n, err := strconv.Atoi(hdr["content-length"]); err == nil {
		body := make([]byte, n+1) // and its NUL
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, "", nil, err
		}
		return append(raw, body...), cmd, hdr, nil
	}
	body, err := r.ReadBytes(0)
	if err != nil {
		return nil, "", nil, err
	}
	return append(raw, body...), cmd, hdr, nil
}

// inDoubtListener is a listener on broker b, reached through a cutProxy,
// whose one operation sends the message's body to out; inDoubt hears of
// each settlement recorded with a commit in doubt.
type inDoubtListener struct {
	*harness
	proxy   *cutProxy
	in, out string
	inDoubt chan struct{}
}

func newInDoubtListener(t *testing.T, b *testenv.Broker) *inDoubtListener {
	l := &inDoubtListener{proxy: startCutProxy(t, b.Addr), in: "/queue/" + uniq("indoubt.in"), out: "/queue/" + uniq("indoubt.out"), inDoubt: make(chan struct{}, 10)}
	// The broker as the listener reaches it: through the proxy.
	viaProxy := &testenv.Broker{Kind: b.Kind, Addr: l.proxy.ln.Addr().String(), Login: b.Login, Passcode: b.Passcode, Host: b.Host}
	o := harnessOpts{
		run: func(ctx context.Context, _ triggers.ListenerSpec, op *triggers.OpDelivery) error {
			return op.Send(ctx, l.out, op.Message().Body, nil)
		},
		observe: func(_ context.Context, s triggers.Settlement) error {
			for _, o := range s.Ops {
				if errors.Is(o.Err, triggers.ErrCommitInDoubt) && o.Outcome == store.OutcomeRolledBack {
					l.inDoubt <- struct{}{}
					break
				}
			}
			return nil
		},
	}
	l.harness = newHarness(t, viaProxy, o, spec(uniq("indoubt"), l.in, func(sl *scripts.Listener) { sl.DedupHeader = "chaos-dedup-id" }))
	l.waitListening()
	return l
}

// commitInDoubt sends input c-1 straight to the broker with the proxy
// armed as how, and waits until its commit is recorded in doubt.
func (l *inDoubtListener) commitInDoubt(b *testenv.Broker, how cut) {
	l.t.Helper()
	l.proxy.arm(how)
	send(l.t, b, l.in, map[string]string{"chaos-dedup-id": "c-1"}, "c-1")
	select {
	case <-l.inDoubt:
	case <-time.After(20 * time.Second):
		l.t.Fatalf("no commit in doubt within 20s; status %+v", l.m.Status())
	}
}

// outcomes waits for n settlements and returns their outcomes, sorted.
func (l *inDoubtListener) outcomes(n int) []string {
	l.t.Helper()
	var got []string
	for range n {
		e := l.next(20 * time.Second)
		got = append(got, e.Outcome)
	}
	slices.Sort(got)
	select {
	case e := <-l.events:
		l.t.Fatalf("settlements %q, then one more: %+v", got, e)
	case <-time.After(500 * time.Millisecond):
	}
	return got
}

// A producer resends a message whose SEND receipt it lost (the chaos
// harness does): two copies of one input, same dedup header, different
// broker message-ids. When the first copy's COMMIT reaches the broker and
// its RECEIPT is lost, the commit is recorded in doubt and the second copy
// is skipped as a duplicate: the operation's effect exists once. When the
// COMMIT itself is lost, the broker gives the first copy back and it runs
// again, whichever copy comes first: the effect exists once too.
func TestCommitInDoubtThroughBroker(t *testing.T) {
	for _, bs := range brokerStarters {
		if !brokercaps.For(bs.kind).StableMessageID {
			continue // RabbitMQ: the copies cannot be told apart (see Dedup)
		}
		t.Run(bs.kind, func(t *testing.T) {
			t.Parallel()
			b := bs.start(t)
			t.Run("receipt lost", func(t *testing.T) {
				t.Parallel()
				l := newInDoubtListener(t, b)
				l.commitInDoubt(b, cutReceipt)
				send(t, b, l.in, map[string]string{"chaos-dedup-id": "c-1"}, "c-1") // the producer's resend
				if got := l.outcomes(1); !slices.Equal(got, []string{store.OutcomeSkippedDuplicate}) {
					t.Fatalf("after the commit in doubt, settlements %q; want the resent copy skipped as a duplicate", got)
				}
				if got := bodies(drain(t, b, l.out, time.Second)); got["c-1"] != 1 || len(got) != 1 {
					t.Fatalf("effects on %s: %v, want c-1 once", l.out, got)
				}
			})
			t.Run("commit lost", func(t *testing.T) {
				t.Parallel()
				l := newInDoubtListener(t, b)
				l.commitInDoubt(b, cutCommit)
				send(t, b, l.in, map[string]string{"chaos-dedup-id": "c-1"}, "c-1")
				want := []string{store.OutcomeCommitted, store.OutcomeSkippedDuplicate}
				if got := l.outcomes(2); !slices.Equal(got, want) {
					t.Fatalf("after the lost commit, settlements %q; want the original run again and the copy skipped", got)
				}
				if got := bodies(drain(t, b, l.out, time.Second)); got["c-1"] != 1 || len(got) != 1 {
					t.Fatalf("effects on %s: %v, want c-1 once", l.out, got)
				}
			})
		})
	}
}
