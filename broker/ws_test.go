package broker

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
)

// serveWS serves b's WebSocket handler on a loopback httptest server and
// returns its ws:// URL.
func serveWS(t testing.TB, b *Broker) string {
	t.Helper()
	srv := httptest.NewServer(b.WebSocketHandler())
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/stomp"
}

// dialWS opens a WebSocket to url offering subprotocols.
func dialWS(t testing.TB, url string, subprotocols ...string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: subprotocols})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = ws.CloseNow() })
	return ws
}

// wsRaw is a rawConn over a WebSocket: frames as a byte stream, each
// write one text message.
func wsRaw(t testing.TB, ws *websocket.Conn) *rawConn {
	nc := websocket.NetConn(context.Background(), ws, websocket.MessageText)
	return &rawConn{t: t, nc: nc, r: frame.NewReader(bufio.NewReader(nc))}
}

func TestWebSocketRoundTrip(t *testing.T) {
	t.Parallel()
	b := startBroker(t, Config{Users: []User{{Login: "app", Passcode: "s3cret", Read: []string{"/queue/ws.*"}, Write: []string{"/queue/ws.*"}}}})
	url := serveWS(t, b)
	ws := dialWS(t, url, "v12.stomp")
	nc := websocket.NetConn(context.Background(), ws, websocket.MessageText)
	c, err := stomp.Connect(nc, stomp.ConnOpt.Login("app", "s3cret"), stomp.ConnOpt.HeartBeat(time.Second, time.Second))
	if err != nil {
		t.Fatalf("CONNECT over WebSocket: %v", err)
	}
	s := subscribe(t, c, "/queue/ws.orders", stomp.AckClientIndividual)
	send(t, c, "/queue/ws.orders", "hello over ws")
	m := recv(t, s)
	if string(m.Body) != "hello over ws" {
		t.Fatalf("body = %q", m.Body)
	}
	if st, _ := b.QueueStats("/queue/ws.orders"); st.InFlight != 1 {
		t.Fatalf("before ACK: %+v, want one in flight", st)
	}
	if err := c.Ack(m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { st, _ := b.QueueStats("/queue/ws.orders"); return st == Stats{} })
	if err := c.Disconnect(); err != nil { // waits for the DISCONNECT receipt
		t.Fatalf("DISCONNECT: %v", err)
	}

	// Permissions apply as on TCP.
	r := wsRaw(t, dialWS(t, url, "v12.stomp"))
	r.write("CONNECT\naccept-version:1.2\nhost:x\nlogin:app\npasscode:s3cret\n\n\x00SEND\ndestination:/queue/other\n\nx\x00")
	r.expectError("no write permission on /queue/other")
}

func TestWebSocketWrongLogin(t *testing.T) {
	t.Parallel()
	b := startBroker(t, Config{Users: []User{{Login: "app", Passcode: "s3cret", Read: []string{"*"}, Write: []string{"*"}}}})
	r := wsRaw(t, dialWS(t, serveWS(t, b), "v12.stomp"))
	r.write("CONNECT\naccept-version:1.2\nhost:x\nlogin:app\npasscode:wrong\n\n\x00")
	r.expectError("access refused")
}

func TestWebSocketSubprotocols(t *testing.T) {
	t.Parallel()
	url := serveWS(t, startBroker(t, Config{}))
	tests := []struct {
		offered []string
		want    string
	}{
		{[]string{"v10.stomp", "v11.stomp", "v12.stomp"}, "v12.stomp"},
		{[]string{"v11.stomp"}, "v11.stomp"},
		{[]string{"v10.stomp"}, "v10.stomp"},
		{[]string{"mqtt"}, ""}, // accepted without a subprotocol, as RabbitMQ Web-STOMP
		{nil, ""},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.offered, ",")+"→"+tc.want, func(t *testing.T) {
			t.Parallel()
			ws := dialWS(t, url, tc.offered...)
			if got := ws.Subprotocol(); got != tc.want {
				t.Errorf("subprotocol = %q, want %q", got, tc.want)
			}
			wsRaw(t, ws).connect("1.2")
		})
	}
}

// TestWebSocketMessagesAreAStream sends a frame split across messages, two
// frames in one message and heart-beats as messages of their own, in text
// and binary messages.
func TestWebSocketMessagesAreAStream(t *testing.T) {
	t.Parallel()
	ws := dialWS(t, serveWS(t, startBroker(t, Config{})), "v12.stomp")
	ctx := context.Background()
	write := func(typ websocket.MessageType, s string) {
		t.Helper()
		if err := ws.Write(ctx, typ, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	write(websocket.MessageText, "CONN")
	write(websocket.MessageBinary, "ECT\naccept-version:1.2\nhost:x\nheart-")
	write(websocket.MessageText, "beat:0,0\n\n\x00")
	write(websocket.MessageText, "\n")
	write(websocket.MessageText, "SUBSCRIBE\nid:1\ndestination:/queue/split\n\n\x00SEND\ndestination:/queue/split\n\nbo")
	write(websocket.MessageBinary, "dy\x00\n")
	r := wsRaw(t, ws)
	if f := r.read(); f == nil || f.Command != frame.CONNECTED {
		t.Fatalf("want CONNECTED, got %v", f)
	}
	f := r.read()
	if f == nil || f.Command != frame.MESSAGE || string(f.Body) != "body" {
		t.Fatalf("want MESSAGE with body \"body\", got %v", f)
	}
}

// TestWebSocketBinaryBody checks that a body that is not UTF-8 comes back
// in a binary message (a text one would be refused by browsers).
func TestWebSocketBinaryBody(t *testing.T) {
	t.Parallel()
	ws := dialWS(t, serveWS(t, startBroker(t, Config{})), "v12.stomp")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msgs := "CONNECT\naccept-version:1.2\nhost:x\n\n\x00" +
		"SUBSCRIBE\nid:1\ndestination:/queue/bin\n\n\x00" +
		"SEND\ndestination:/queue/bin\ncontent-length:2\n\n\xff\xfe\x00"
	if err := ws.Write(ctx, websocket.MessageText, []byte(msgs)); err != nil {
		t.Fatal(err)
	}
	for {
		typ, p, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(p), "MESSAGE\n") {
			continue
		}
		if typ != websocket.MessageBinary || !strings.HasSuffix(string(p), "\xff\xfe\x00") {
			t.Fatalf("MESSAGE came as %v: %q", typ, p)
		}
		return
	}
}

func TestWebSocketLimits(t *testing.T) {
	t.Parallel()
	t.Run("CONNECT timeout", func(t *testing.T) {
		t.Parallel()
		b := startBroker(t, Config{ConnectTimeout: 300 * time.Millisecond})
		wsRaw(t, dialWS(t, serveWS(t, b))).expectError("no CONNECT frame within 300ms")
	})
	t.Run("connections shared with TCP", func(t *testing.T) {
		t.Parallel()
		b := startBroker(t, Config{MaxConnections: 1})
		dialRaw(t, b).connect("1.2")
		r := wsRaw(t, dialWS(t, serveWS(t, b)))
		r.write("CONNECT\naccept-version:1.2\nhost:x\n\n\x00")
		r.expectError("too many connections")
	})
}

// TestWebSocketOpenBrokerOnlyOnLoopback: without users, a request that
// arrived on an address other than loopback is refused before the upgrade.
func TestWebSocketOpenBrokerOnlyOnLoopback(t *testing.T) {
	t.Parallel()
	h := startBroker(t, Config{}).WebSocketHandler()
	req := httptest.NewRequest(http.MethodGet, "/stomp", nil)
	req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 15674}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Fatalf("status = %d, want 403", rec.Code)
	}
}
