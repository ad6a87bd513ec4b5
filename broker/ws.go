package broker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// WebSocketSubprotocols are the WebSocket subprotocols the broker
// negotiates, in its order of preference, as RabbitMQ Web-STOMP does.
var WebSocketSubprotocols = []string{"v12.stomp", "v11.stomp", "v10.stomp"}

// WebSocketHandler returns an http.Handler that upgrades each request to a
// WebSocket and serves a STOMP session over it, as ServeConn does for a TCP
// connection: the same users, permissions, limits (MaxConnections,
// ConnectTimeout, frame sizes) and heart-beats apply. Whoever mounts it
// chooses the path (the agent uses /stomp).
//
// It negotiates the subprotocols in WebSocketSubprotocols; a client that
// offers none of them is still accepted, with no subprotocol, as RabbitMQ
// Web-STOMP does. Any Origin is accepted: the broker authenticates clients
// by login and passcode in CONNECT, not by where the page came from. A
// broker without users answers 403 to a request that did not arrive on a
// loopback address, as Serve refuses such a listener.
//
// Frames arrive in text or binary messages; a frame may span messages and
// a message may hold several frames. The broker sends what it has queued
// as one message: text when it is valid UTF-8, binary otherwise (browsers
// close a connection on a text message that is not UTF-8). Heart-beats
// are messages of one EOL. The handler does not block once the session
// starts; the session ends when the client disconnects or the broker
// closes. Goroutine-safe.
func (b *Broker) WebSocketHandler() http.Handler {
	return http.HandlerFunc(b.serveWebSocket)
}

func (b *Broker) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	if local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && b.auth.open() && !IsLoopback(local.String()) {
		http.Error(w, "no broker users are configured: the broker serves only loopback clients", http.StatusForbidden)
		return
	}
	hr := &hijackRecorder{ResponseWriter: w}
	ws, err := websocket.Accept(hr, r, &websocket.AcceptOptions{
		Subprotocols:       WebSocketSubprotocols,
		InsecureSkipVerify: true, // any Origin: clients authenticate in CONNECT
	})
	if err != nil {
		b.log.Info("broker: websocket upgrade failed", "remote", r.RemoteAddr, "error", err)
		return // Accept has answered
	}
	b.ServeConn(newWSConn(ws, hr.conn))
}

// hijackRecorder keeps the connection websocket.Accept hijacks, so that
// wsConn.Close can close it at once even while a close handshake runs.
type hijackRecorder struct {
	http.ResponseWriter
	conn net.Conn
}

func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	h.conn = nc
	return nc, brw, err
}

// wsReadChunk bounds what the pump reads from a message at a time.
const wsReadChunk = 32 << 10

// wsConn adapts a server WebSocket to a net.Conn carrying a byte stream:
// reads return the bytes of successive messages, each Write is one
// message. Unlike websocket.NetConn, a read deadline that passes leaves
// the connection usable (the broker then writes an ERROR frame), and
// messages of both types are read. A pump goroutine, owned by the wsConn
// and stopped by Close, reads messages ahead of Read.
type wsConn struct {
	ws  *websocket.Conn
	raw net.Conn // the hijacked connection under ws

	ctx    context.Context // ends on Close
	cancel context.CancelFunc

	chunks   chan []byte   // from the pump; closed when it stops
	pumpErr  error         // why the pump stopped; read after chunks is closed
	pumpDone chan struct{} // closed when the pump has returned

	rmu  sync.Mutex // one Read at a time
	rest []byte     // unread bytes of the last chunk, guarded by rmu

	dmu           sync.Mutex // guards the deadlines
	readDeadline  time.Time
	writeDeadline time.Time
	deadlineMoved chan struct{} // cap 1: the read deadline changed

	polite    atomic.Bool // CloseWrite began a close handshake
	closeOnce sync.Once
}

var _ net.Conn = (*wsConn)(nil)

func newWSConn(ws *websocket.Conn, raw net.Conn) *wsConn {
	ws.SetReadLimit(-1) // frame limits apply to the byte stream
	ctx, cancel := context.WithCancel(context.Background())
	c := &wsConn{
		ws: ws, raw: raw, ctx: ctx, cancel: cancel,
		chunks:        make(chan []byte),
		pumpDone:      make(chan struct{}),
		deadlineMoved: make(chan struct{}, 1),
	}
	go c.pump()
	return c
}

// pump reads messages and hands their bytes to Read until the connection
// fails or closes. A peer's normal close becomes io.EOF.
func (c *wsConn) pump() {
	defer close(c.pumpDone)
	defer close(c.chunks)
	buf := make([]byte, wsReadChunk)
	for {
		_, r, err := c.ws.Reader(c.ctx)
		if err != nil {
			c.pumpErr = c.readError(err)
			return
		}
		for {
			n, err := r.Read(buf)
			if n > 0 {
				select {
				case c.chunks <- bytes.Clone(buf[:n]):
				case <-c.ctx.Done():
					c.pumpErr = net.ErrClosed
					return
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				c.pumpErr = c.readError(err)
				return
			}
		}
	}
}

// readError maps a websocket read error to what a net.Conn reader expects.
func (c *wsConn) readError(err error) error {
	switch {
	case c.ctx.Err() != nil:
		return net.ErrClosed
	case websocket.CloseStatus(err) == websocket.StatusNormalClosure,
		websocket.CloseStatus(err) == websocket.StatusGoingAway:
		return io.EOF
	}
	return fmt.Errorf("websocket read: %w", err)
}

// Read returns bytes of the client's messages, blocking until some
// arrive, the read deadline passes (a timeout error; the connection stays
// usable), or the connection ends.
func (c *wsConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.rest) == 0 {
		if err := c.nextChunk(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.rest)
	c.rest = c.rest[n:]
	return n, nil
}

// nextChunk waits for the pump's next chunk into c.rest. Called with rmu held.
func (c *wsConn) nextChunk() error {
	for {
		c.dmu.Lock()
		dl := c.readDeadline
		c.dmu.Unlock()
		expired, stop := deadlineTimer(dl)
		select {
		case b, ok := <-c.chunks:
			stop()
			if !ok {
				return c.pumpErr
			}
			c.rest = b
			return nil
		case <-expired:
			return os.ErrDeadlineExceeded
		case <-c.deadlineMoved:
			stop()
		case <-c.ctx.Done():
			stop()
			return net.ErrClosed
		}
	}
}

// deadlineTimer returns a channel that fires at dl (never when dl is zero;
// at once when it has passed) and a function that releases it.
func deadlineTimer(dl time.Time) (<-chan time.Time, func()) {
	if dl.IsZero() {
		return nil, func() {}
	}
	t := time.NewTimer(time.Until(dl))
	return t.C, func() { t.Stop() }
}

// Write sends p as one message: text when p is valid UTF-8, binary
// otherwise. It blocks until written, the write deadline passes (which
// closes the connection) or the connection closes.
func (c *wsConn) Write(p []byte) (int, error) {
	typ := websocket.MessageText
	if !utf8.Valid(p) {
		typ = websocket.MessageBinary
	}
	c.dmu.Lock()
	dl := c.writeDeadline
	c.dmu.Unlock()
	ctx := c.ctx
	if !dl.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl)
		defer cancel()
	}
	if err := c.ws.Write(ctx, typ, p); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, os.ErrDeadlineExceeded
		}
		return 0, fmt.Errorf("websocket write: %w", err)
	}
	return len(p), nil
}

// CloseWrite starts the WebSocket close handshake (status 1000) after what
// was written, and waits (about 5 s at most) for the client's answer while
// the pump goes on reading; the broker calls it before closing, as it
// half-closes a TCP connection, so that the client reads the last frames
// (an ERROR) before the connection ends. Close interrupts it.
func (c *wsConn) CloseWrite() error {
	c.polite.Store(true)
	return c.ws.Close(websocket.StatusNormalClosure, "")
}

// Close closes the connection at once and waits for the pump to stop; it
// does not block on the client. Idempotent.
func (c *wsConn) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		if c.raw != nil {
			_ = c.raw.Close() // ends a close handshake under way
		}
		if !c.polite.Load() {
			_ = c.ws.CloseNow()
		}
	})
	<-c.pumpDone
	return nil
}

func (c *wsConn) LocalAddr() net.Addr  { return c.addr(net.Conn.LocalAddr) }
func (c *wsConn) RemoteAddr() net.Addr { return c.addr(net.Conn.RemoteAddr) }

func (c *wsConn) addr(get func(net.Conn) net.Addr) net.Addr {
	if c.raw == nil {
		return wsAddr{}
	}
	return get(c.raw)
}

// wsAddr stands for an address the wsConn does not know.
type wsAddr struct{}

func (wsAddr) Network() string { return "websocket" }
func (wsAddr) String() string  { return "websocket/unknown-addr" }

func (c *wsConn) SetDeadline(t time.Time) error {
	_ = c.SetWriteDeadline(t)
	return c.SetReadDeadline(t)
}

func (c *wsConn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	c.readDeadline = t
	c.dmu.Unlock()
	select {
	case c.deadlineMoved <- struct{}{}:
	default:
	}
	return nil
}

func (c *wsConn) SetWriteDeadline(t time.Time) error {
	c.dmu.Lock()
	c.writeDeadline = t
	c.dmu.Unlock()
	return nil
}
