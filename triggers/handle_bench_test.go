package triggers

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"

	"github.com/opsrunner/opsrunner/cluster"
	"github.com/opsrunner/opsrunner/internal/stompc"
	"github.com/opsrunner/opsrunner/scripts"
)

// BenchmarkHandle measures what the listener does per message around the
// chains, without a broker: a peer on a pipe sends MESSAGE frames shaped
// like the embedded broker's and discards the ACKs; the chain runner does
// nothing. ns/op is the lifecycle's own cost (read, dedup, claim, contexts,
// commit, marker).
func BenchmarkHandle(b *testing.B) {
	nc, peer := net.Pipe()
	defer nc.Close()
	go func() { // owner: the benchmark; ends when nc closes
		defer peer.Close()
		r := bufio.NewReader(peer)
		if _, err := r.ReadString(0); err != nil { // CONNECT
			return
		}
		if _, err := peer.Write([]byte("CONNECTED\nversion:1.2\nserver:opsrunner/bench\n\n\x00")); err != nil {
			return
		}
		go func() { _, _ = io.Copy(io.Discard, r) }() // ACKs
		body := `{"id":1,"name":"widget"}`
		var buf []byte
		for i := 0; ; i++ {
			id := "ID:bench-1:1:1:" + strconv.Itoa(i)
			buf = append(buf[:0], "MESSAGE\ndestination:/queue/in\nmessage-id:"+id+"\nsubscription:1\nack:"+id+
				"\ncontent-type:application/json\npersistent:true\npriority:4\ntimestamp:1764680000000\nexpires:0\ncontent-length:"+
				strconv.Itoa(len(body))+"\n\n"+body+"\x00"...)
			if _, err := peer.Write(buf); err != nil {
				return
			}
		}
	}()
	conn, err := stompc.Connect(nc, stompc.Options{})
	if err != nil {
		b.Fatal(err)
	}
	sp := ListenerSpec{ID: "p/l", Project: "p", Version: 1, Listener: scripts.Listener{Name: "l", Destination: "/queue/in",
		AckTimeout: scripts.Duration(scripts.DefaultAckTimeout), Redelivery: scripts.Redelivery{MaxRedeliveries: 5}}}
	m := NewManager(ManagerConfig{Agent: "a", Coordinator: cluster.NewLocal("a"), Slots: NewSlots(2),
		Handler: func(ListenerSpec) Handler { return runOps(func(context.Context, *OpDelivery) error { return nil }) },
		Logger:  slog.New(slog.DiscardHandler)})
	sp.Listener.Operations = []string{"op"}
	l := &listener{m: m, spec: sp, pol: policyFor("a", sp), log: m.cfg.Logger}
	h := l.chain(m.handlerFor(sp))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		msg, err := conn.Next()
		if err != nil {
			b.Fatal(err)
		}
		if err := (source{l: l}).deliver(ctx, h, conn, msg); err != nil {
			b.Fatal(err)
		}
	}
	if got := l.counts[0].Load(); got == 0 {
		b.Fatalf("%d committed", got)
	}
}
