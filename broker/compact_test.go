package broker

import (
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
)

// While the journal is compacted online, a producer and a consumer of
// another queue go on: every message they exchange arrives once, and
// after a restart nothing is left.
func TestCompactionUnderLoadLosesAndRepeatsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~48 MiB")
	}
	dir := t.TempDir()
	var logs logBuffer
	defer func() { t.Log(logs.String()) }()
	b := startBroker(t, Config{DataDir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	c := dial(t, b)
	body := make([]byte, 32<<10)
	for i := range 1500 {
		o := []func(*frame.Frame) error{persistent}
		if i == 1499 {
			o = append(o, stomp.SendOpt.Receipt)
		}
		must(t, c.Send("/queue/big", "application/octet-stream", body, o...))
	}

	got := make(chan string, 100000)
	consumer := dial(t, b, stomp.ConnOpt.WriteChannelCapacity(100000))
	live := subscribe(t, consumer, "/queue/live", stomp.AckClientIndividual, prefetch10)
	var wg sync.WaitGroup
	wg.Go(func() {
		for m := range live.C {
			if m.Err != nil {
				return
			}
			got <- string(m.Body)
			_ = consumer.Ack(m)
		}
	})
	sent := 0
	var prodErr error
	producing, stop := make(chan struct{}), make(chan struct{})
	go func() { // sends until the journal was compacted and 500 more, or until stopped
		defer close(producing)
		p := dial(t, b)
		for extra := -1; extra != 0; sent++ {
			select {
			case <-stop:
				return
			default:
			}
			if extra < 0 && strings.Contains(logs.String(), "journal compacted") {
				extra = 500
			} else if extra > 0 {
				extra--
			}
			if prodErr = p.Send("/queue/live", "text/plain", []byte(strconv.Itoa(sent)), persistent, stomp.SendOpt.Receipt); prodErr != nil {
				return
			}
		}
	}()

	drainer := dial(t, b, stomp.ConnOpt.WriteChannelCapacity(100000))
	big := subscribe(t, drainer, "/queue/big", stomp.AckClientIndividual, prefetch10)
	for range 1500 {
		must(t, drainer.Ack(recv(t, big)))
	}
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(logs.String(), "journal compacted"); {
		if time.Now().After(deadline) {
			close(stop)
			<-producing
			t.Fatal("the journal was not compacted within 60 s of draining")
		}
		time.Sleep(100 * time.Millisecond)
	}
	<-producing
	must(t, prodErr)
	seen := map[string]bool{}
	for len(seen) < sent {
		select {
		case id := <-got:
			if seen[id] {
				t.Fatalf("message %s delivered twice", id)
			}
			seen[id] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d messages arrived", len(seen), sent)
		}
	}
	waitFor(t, func() bool { s, _ := b.QueueStats("/queue/live"); return s.Pending == 0 && s.InFlight == 0 })
	_ = consumer.Disconnect()
	wg.Wait()
	_ = b.Close()

	b2 := startBroker(t, Config{DataDir: dir})
	for _, q := range []string{"/queue/big", "/queue/live"} {
		if s, _ := b2.QueueStats(q); s.Pending != 0 {
			t.Errorf("%s holds %d messages after a restart, want none", q, s.Pending)
		}
	}
	t.Logf("%d messages exchanged while compacting", sent)
}

// Closing the broker answers every frame it applied: a producer that
// waits for each SEND's receipt has a receipt for exactly the messages
// found after a restart.
func TestCloseAnswersEverySendItApplied(t *testing.T) {
	for round := range 5 {
		dir := t.TempDir()
		b := startBroker(t, Config{DataDir: dir})
		// go-stomp waits out its receipt timeout on a closed connection
		c, err := stomp.Dial("tcp", b.Addr().String(), stomp.ConnOpt.RcvReceiptTimeout(2*time.Second))
		must(t, err)
		receipted := 0
		sending := make(chan struct{})
		go func() {
			defer close(sending)
			for i := 0; ; i++ {
				if c.Send("/queue/close", "text/plain", []byte(strconv.Itoa(i)), persistent, stomp.SendOpt.Receipt) != nil {
					return
				}
				receipted++
			}
		}()
		time.Sleep(time.Duration(50+20*round) * time.Millisecond)
		_ = b.Close()
		<-sending
		b2 := startBroker(t, Config{DataDir: dir})
		if s, _ := b2.QueueStats("/queue/close"); s.Pending != receipted {
			t.Fatalf("round %d: %d messages stored, %d receipts received", round, s.Pending, receipted)
		}
		_ = b2.Close()
	}
}
