package triggers_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/opsrunner/opsrunner/cluster"
	"github.com/opsrunner/opsrunner/internal/testenv"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
	"github.com/opsrunner/opsrunner/triggers"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var brokerStarters = []struct {
	kind  string
	start func(testing.TB) *testenv.Broker
}{
	{testenv.KindEmbedded, testenv.Embedded},
	{testenv.KindActiveMQ, testenv.ActiveMQ},
	{testenv.KindRabbitMQ, testenv.RabbitMQ},
}

var seq atomic.Int64

// uniq returns a destination-safe name unique in this test binary run.
func uniq(prefix string) string {
	return fmt.Sprintf("%s.%d.%d", prefix, time.Now().UnixNano()%1e9, seq.Add(1))
}

// settled is one delivery's settlement as the handler observed it.
type settled struct {
	triggers.Settlement
	Outcome string
	Err     error
	body    string
}

// harness is one Manager on one broker with its observations.
type harness struct {
	t       *testing.T
	b       *testenv.Broker
	m       *triggers.Manager
	st      store.Store
	events  chan settled
	cancel  context.CancelFunc
	stopped chan struct{}
}

type harnessOpts struct {
	// run runs one operation of a delivery; the harness settles it by
	// the error (OpDelivery.Done).
	run    func(ctx context.Context, spec triggers.ListenerSpec, op *triggers.OpDelivery) error
	filter func(ctx context.Context, spec triggers.ListenerSpec, d *triggers.Delivery) (bool, error)
	// heartBeat replaces connFor's heart-beat when set.
	heartBeat time.Duration
	// coord replaces the harness's own local coordinator when set.
	coord cluster.Coordinator
	// observe is registered on every delivery (Delivery.OnSettle).
	observe triggers.SettleFunc
}

func connFor(b *testenv.Broker) triggers.ConnConfig {
	return triggers.ConnConfig{Name: "default", Addr: b.Addr, Login: b.Login, Passcode: b.Passcode, Host: b.Host, HeartBeat: 2 * time.Second}
}

func newHarness(t *testing.T, b *testenv.Broker, o harnessOpts, specs ...triggers.ListenerSpec) *harness {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "store.db"), store.BoltOptions{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	h := &harness{t: t, b: b, st: st, events: make(chan settled, 1000), stopped: make(chan struct{})}
	cc := connFor(b)
	if o.heartBeat > 0 {
		cc.HeartBeat = o.heartBeat
	}
	coord := o.coord
	if coord == nil {
		coord = cluster.NewLocal("agent-test")
	}
	h.m = triggers.NewManager(triggers.ManagerConfig{
		Agent:       "agent-test",
		Connections: map[string]triggers.ConnConfig{"default": cc},
		Coordinator: coord,
		Store:       st,
		Handler:     func(sp triggers.ListenerSpec) triggers.Handler { return h.handler(sp, o) },
		Slots:       triggers.NewSlots(8),
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { defer close(h.stopped); _ = h.m.Run(ctx) }()
	h.m.Apply(specs)
	t.Cleanup(func() {
		h.stop()
		st.Close()
	})
	return h
}

// handler is what an agent does with a delivery: report its settlement,
// filter it, run each operation due and settle it by the run's error.
func (h *harness) handler(sp triggers.ListenerSpec, o harnessOpts) triggers.Handler {
	return func(ctx context.Context, d *triggers.Delivery) error {
		d.OnSettled(func(s triggers.Settlement) {
			outcome, err := outcomeOf(s)
			h.events <- settled{Settlement: s, Outcome: outcome, Err: err, body: string(d.Message().Body)}
		})
		if o.observe != nil {
			d.OnSettling(ctx, o.observe)
		}
		if !d.Pending() {
			return nil
		}
		if o.filter != nil {
			ok, err := o.filter(ctx, sp, d)
			if err != nil {
				return err
			}
			if !ok {
				d.RollbackAll(triggers.ErrRefused)
				return nil
			}
		}
		for _, op := range d.Ops() {
			if !op.Pending() {
				continue
			}
			op.Start()
			var err error
			if o.run != nil {
				err = o.run(ctx, sp, op)
			}
			_ = op.Done(ctx, err)
		}
		return nil
	}
}

func (h *harness) stop() {
	h.cancel()
	select {
	case <-h.stopped:
	case <-time.After(30 * time.Second):
		h.t.Errorf("manager did not stop within 30s")
	}
}

// next waits for the next settlement.
func (h *harness) next(timeout time.Duration) settled {
	h.t.Helper()
	select {
	case e := <-h.events:
		return e
	case <-time.After(timeout):
		h.t.Fatalf("no settlement within %s; status %+v", timeout, h.m.Status())
		return settled{}
	}
}

// waitListening waits until every listener reports "listening".
func (h *harness) waitListening() {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		st := h.m.Status()
		ok := len(st) > 0
		for _, s := range st {
			ok = ok && s.State == "listening"
		}
		if ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("listeners not listening: %+v", h.m.Status())
}

func spec(name, dest string, mut func(*scripts.Listener)) triggers.ListenerSpec {
	l := scripts.Listener{
		Name: name, Destination: dest, AckTimeout: scripts.Duration(20 * time.Second),
		Redelivery: scripts.Redelivery{MaxRedeliveries: scripts.DefaultMaxRedeliveries, InitialDelay: scripts.Duration(20 * time.Millisecond), Multiplier: 2, MaxDelay: scripts.Duration(100 * time.Millisecond)},
	}
	if mut != nil {
		mut(&l)
	}
	if len(l.Operations) == 0 {
		l.Operations = []string{"op"}
	}
	return triggers.ListenerSpec{ID: "p/" + name, Project: "p", Version: 1, Listener: l}
}

// send publishes persistent messages with a bare client.
func send(t *testing.T, b *testenv.Broker, dest string, headers map[string]string, bodies ...string) {
	t.Helper()
	c, err := b.Dial(testenv.QuietLogs())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Disconnect()
	for _, body := range bodies {
		opts := []func(*frame.Frame) error{stomp.SendOpt.Receipt, stomp.SendOpt.Header("persistent", "true")}
		for k, v := range headers {
			opts = append(opts, stomp.SendOpt.Header(k, v))
		}
		if err := c.Send(dest, "text/plain", []byte(body), opts...); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
}

// drain reads every message of dest until quiet passes without one.
func drain(t *testing.T, b *testenv.Broker, dest string, quiet time.Duration) []*stomp.Message {
	t.Helper()
	c, err := b.Dial(testenv.QuietLogs())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Disconnect()
	sub, err := c.Subscribe(dest, stomp.AckClientIndividual)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	var out []*stomp.Message
	for {
		select {
		case m := <-sub.C:
			if m.Err != nil {
				t.Fatalf("drain %s: %v", dest, m.Err)
			}
			out = append(out, m)
			_ = c.Ack(m)
		case <-time.After(quiet):
			return out
		}
	}
}

func bodies(ms []*stomp.Message) map[string]int {
	out := map[string]int{}
	for _, m := range ms {
		out[string(m.Body)]++
	}
	return out
}

// forEachBroker runs f as a parallel subtest per available broker.
func forEachBroker(t *testing.T, f func(t *testing.T, b *testenv.Broker)) {
	for _, bs := range brokerStarters {
		t.Run(bs.kind, func(t *testing.T) {
			t.Parallel()
			f(t, bs.start(t))
		})
	}
}

// outcomeOf is a delivery's outcome as one word: the first operation's
// that did not commit, else committed (skipped_duplicate when none ran).
func outcomeOf(s triggers.Settlement) (string, error) {
	outcome := store.OutcomeSkippedDuplicate
	for _, o := range s.Ops {
		switch o.Outcome {
		case store.OutcomeCommitted:
			outcome = store.OutcomeCommitted
		case store.OutcomeSkippedDuplicate:
		default:
			return o.Outcome, o.Err
		}
	}
	return outcome, nil
}
