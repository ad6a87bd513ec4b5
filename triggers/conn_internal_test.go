package triggers

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// silentBroker accepts TCP connections and reads whatever arrives, but never
// answers: a hung broker with its socket open. It stops with the test.
func silentBroker(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { // ends when the client gives up and closes
				defer c.Close()
				_, _ = io.Copy(io.Discard, c)
			})
		}
	})
	return ln.Addr().String()
}

// A broker that takes the TCP connection but never sends CONNECTED fails
// the attempt after connectTimeout, with an error that says so, for the
// listener's consuming client and for the sending one alike; the listener
// then retries with backoff. The test takes connectTimeout (10 s).
func TestConnectFailsWhenTheBrokerNeverAnswers(t *testing.T) {
	if testing.Short() {
		t.Skip("takes the 10 s connect timeout")
	}
	t.Parallel()
	cc := ConnConfig{Name: "hung", Addr: silentBroker(t)}
	dials := map[string]func(context.Context) error{
		"consumer": func(ctx context.Context) error {
			c, err := dialConsumer(ctx, cc, nil)
			if err == nil {
				c.Close()
			}
			return err
		},
		"sender": func(ctx context.Context) error {
			c, err := dial(ctx, cc, nil)
			if err == nil {
				_ = c.MustDisconnect()
			}
			return err
		},
	}
	for name, dial := range dials {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			err := dial(context.Background())
			took := time.Since(start)
			if err == nil {
				t.Fatal("connected to a broker that never answers")
			}
			want := "connect to broker hung (" + cc.Addr + "): no CONNECTED within 10s"
			if !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("error %q, want it to start with %q", err, want)
			}
			if took < connectTimeout-time.Second {
				t.Fatalf("gave up after %s, before the %s connect timeout", took, connectTimeout)
			}
		})
	}
}
