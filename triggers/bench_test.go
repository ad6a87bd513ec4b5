package triggers_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/opsrunner/opsrunner/cluster"
	"github.com/opsrunner/opsrunner/internal/brokercaps"
	"github.com/opsrunner/opsrunner/internal/testenv"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/triggers"
)

// benchConsumers is the concurrency of both sides of BenchmarkListener.
const benchConsumers = 4

// BenchmarkListener measures the delivery lifecycle's overhead: a queue
// drained through the Manager (trivial Go chain, onSuccess commit in a STOMP
// transaction with receipt, processed marker) against bare go-stomp
// client-individual consumers (prefetch 1, ACK per message), with the same
// concurrency, on the same broker in the same run. It reports msg/s of both
// and their ratio. Run: go test -run '^$' -bench Listener ./triggers/
func BenchmarkListener(b *testing.B) {
	for _, bs := range brokerStarters[:2] { // embedded, ActiveMQ
		b.Run(bs.kind, func(b *testing.B) {
			br := bs.start(b)
			const n = 2000
			var bare, mgr float64
			for b.Loop() {
				bare = benchBare(b, br, n)
				mgr = benchManager(b, br, n)
			}
			b.ReportMetric(bare, "bare_msg/s")
			b.ReportMetric(mgr, "manager_msg/s")
			b.ReportMetric(mgr/bare, "ratio")
		})
	}
}

func fill(b *testing.B, br *testenv.Broker, dest string, n int) {
	c, err := br.Dial(testenv.QuietLogs())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Disconnect()
	for i := range n {
		opts := []func(*frame.Frame) error{stomp.SendOpt.Header("persistent", "true")}
		if i == n-1 {
			opts = append(opts, stomp.SendOpt.Receipt)
		}
		if err := c.Send(dest, "text/plain", []byte("m"+strconv.Itoa(i)), opts...); err != nil {
			b.Fatal(err)
		}
	}
}

func benchBare(b *testing.B, br *testenv.Broker, n int) float64 {
	dest := "/queue/" + uniq("bench.bare")
	fill(b, br, dest, n)
	caps := brokercaps.For(br.Kind)
	var got atomic.Int64
	done := make(chan struct{})
	var once sync.Once
	start := time.Now()
	var wg sync.WaitGroup
	for range benchConsumers {
		wg.Go(func() {
			c, err := br.Dial(testenv.QuietLogs())
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Disconnect()
			sub, err := c.Subscribe(dest, stomp.AckClientIndividual, caps.PrefetchOption(1))
			if err != nil {
				b.Error(err)
				return
			}
			for {
				select {
				case <-done:
					return
				case m := <-sub.C:
					if m.Err != nil {
						b.Error(m.Err)
						return
					}
					if err := c.Ack(m); err != nil {
						b.Error(err)
						return
					}
					if got.Add(1) == int64(n) {
						once.Do(func() { close(done) })
					}
				}
			}
		})
	}
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		b.Fatalf("bare consumers got %d of %d", got.Load(), n)
	}
	el := time.Since(start)
	wg.Wait()
	return float64(n) / el.Seconds()
}

func benchManager(b *testing.B, br *testenv.Broker, n int) float64 {
	dest := "/queue/" + uniq("bench.mgr")
	fill(b, br, dest, n)
	var got atomic.Int64
	done := make(chan struct{})
	var once sync.Once
	m := triggers.NewManager(triggers.ManagerConfig{
		Agent:       "bench",
		Connections: map[string]triggers.ConnConfig{"default": connFor(br)},
		Coordinator: cluster.NewLocal("bench"),
		Slots:       triggers.NewSlots(benchConsumers),
		Handler: func(triggers.ListenerSpec) triggers.Handler {
			return func(ctx context.Context, d *triggers.Delivery) error {
				d.OnSettled(func(triggers.Settlement) {
					if got.Add(1) == int64(n) {
						once.Do(func() { close(done) })
					}
				})
				for _, op := range d.Ops() {
					_ = op.Done(ctx, nil)
				}
				return nil
			}
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	start := time.Now()
	go func() { defer close(stopped); _ = m.Run(ctx) }()
	m.Apply([]triggers.ListenerSpec{spec(uniq("bench"), dest, func(l *scripts.Listener) { l.Consumers = benchConsumers })})
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		b.Fatalf("manager settled %d of %d", got.Load(), n)
	}
	el := time.Since(start)
	cancel()
	<-stopped
	return float64(n) / el.Seconds()
}
