// Package stompc is the lean STOMP 1.2 client connection listeners consume
// with. Frames are read on the caller's goroutine and written directly, so a
// message costs no goroutine hand-offs, and the headers of a frame cost one
// allocation. go-stomp's client, which opsrunner still uses to send, passes
// every frame through two goroutines and allocates twice per header; on a
// listener that runs a small script per message that was a third of the
// agent's CPU.
//
// A Conn is used by one consumer: Next, and the receipts Commit, Send and
// Disconnect wait for, read the connection and must not run concurrently
// (a read mutex enforces it). Writes may come from any goroutine.
// Heart-beats are sent by a timer the Conn owns and stops on Close.
package stompc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-stomp/stomp/v3/frame"
)

// ErrStopped is returned by Next once the context given to StopOn has ended.
var ErrStopped = errors.New("stompc: stopped")

// ErrInDoubt is wrapped by Commit's error when the COMMIT frame was written
// but its RECEIPT never came (the connection broke, or the receipt timed
// out): the broker may or may not have applied the transaction. Any other
// Commit error is a definite failure: the transaction was not applied.
var ErrInDoubt = errors.New("commit in doubt")

// Limits on what a broker may send in one frame.
const (
	maxHeaderBytes = 1 << 20
	maxBodyBytes   = 1 << 30
)

// Options are the CONNECT settings.
type Options struct {
	Login, Passcode string
	Host            string // virtual host; "" sends "/"
	// HeartBeat is the interval offered both ways; 0 disables heart-beats.
	HeartBeat time.Duration
	// Silence is how long the broker may stay silent, beyond its negotiated
	// heart-beat interval, before the connection is declared dead.
	Silence time.Duration
	// ReceiptTimeout bounds waiting for a RECEIPT (default 30 s).
	ReceiptTimeout time.Duration
	// Headers are extra CONNECT headers (client-id for durable subscriptions).
	Headers map[string]string
}

// Conn is a STOMP 1.2 connection. See the package comment for which
// methods may run concurrently.
type Conn struct {
	nc             net.Conn
	server         string
	readLimit      time.Duration // longest allowed silence; 0: none
	receiptTimeout time.Duration

	rmu     sync.Mutex // one reader at a time
	r       *bufio.Reader
	hbuf    []byte     // header bytes of the frame being read
	offs    []int      // offsets into hbuf: key start, colon, line end
	pending []*Message // MESSAGE frames read while waiting for a receipt

	wmu    sync.Mutex
	w      *bufio.Writer
	wrote  bool        // something was written since the last heart-beat tick
	beat   *time.Timer // nil without outgoing heart-beats
	closed bool

	// dmu orders read-deadline changes between the reader and StopOn: a
	// stop must not cut short the wait for a receipt (bufio would drop the
	// part of a frame read so far, and a commit would fail that the broker
	// applied).
	dmu       sync.Mutex
	stopped   bool // guarded by dmu
	inReceipt bool // guarded by dmu

	ids atomic.Uint64
}

// Message is a MESSAGE frame.
type Message struct {
	Header Header
	Body   []byte
	ack    string
}

// Header is a frame's headers in order; a key may repeat (the first wins).
type Header []string

// Len is the number of headers.
func (h Header) Len() int { return len(h) / 2 }

// GetAt returns the i-th header.
func (h Header) GetAt(i int) (key, value string) { return h[2*i], h[2*i+1] }

// Get returns the first value of key, or "".
func (h Header) Get(key string) string {
	for i := 0; i < len(h); i += 2 {
		if h[i] == key {
			return h[i+1]
		}
	}
	return ""
}

// Connect sends CONNECT on nc and waits for CONNECTED, within nc's
// deadline if the caller set one (it is cleared on success).
func Connect(nc net.Conn, o Options) (*Conn, error) {
	c := &Conn{nc: nc, r: bufio.NewReaderSize(nc, 16<<10), w: bufio.NewWriterSize(nc, 4<<10), receiptTimeout: o.ReceiptTimeout}
	if c.receiptTimeout <= 0 {
		c.receiptTimeout = 30 * time.Second
	}
	host := o.Host
	if host == "" {
		host = "/"
	}
	hb := o.HeartBeat.Milliseconds()
	h := []string{"accept-version", "1.2", "host", host, "heart-beat", strconv.FormatInt(hb, 10) + "," + strconv.FormatInt(hb, 10)}
	if o.Login != "" || o.Passcode != "" {
		h = append(h, "login", o.Login, "passcode", o.Passcode)
	}
	for k, v := range o.Headers {
		h = append(h, k, v)
	}
	if err := c.write(frame.CONNECT, h, nil, false); err != nil {
		return nil, fmt.Errorf("send CONNECT: %w", err)
	}
	cmd, ch, body, err := c.parseFrame(nil) // within the caller's deadline
	if err != nil {
		return nil, fmt.Errorf("read CONNECTED: %w", err)
	}
	if cmd == frame.ERROR {
		return nil, brokerError(ch, body)
	}
	if cmd != frame.CONNECTED {
		return nil, fmt.Errorf("expected CONNECTED, got %s", cmd)
	}
	if v := ch.Get("version"); v != "1.2" {
		return nil, fmt.Errorf("broker speaks STOMP %q, not 1.2", v)
	}
	c.server = ch.Get("server")
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	// Heart-beats: the broker's "sx,sy" against our (hb,hb).
	var sx, sy int64
	if v := ch.Get("heart-beat"); v != "" {
		a, b, _ := strings.Cut(v, ",")
		sx, _ = strconv.ParseInt(strings.TrimSpace(a), 10, 64)
		sy, _ = strconv.ParseInt(strings.TrimSpace(b), 10, 64)
	}
	if hb > 0 && sx > 0 {
		in := time.Duration(max(hb, sx)) * time.Millisecond
		c.readLimit = 2 * (in + o.Silence)
	}
	if hb > 0 && sy > 0 {
		out := time.Duration(max(hb, sy)) * time.Millisecond
		c.wmu.Lock() // the first tick waits until c.beat is set
		c.beat = time.AfterFunc(out/2, func() { c.heartBeat(out / 2) })
		c.wmu.Unlock()
	}
	return c, nil
}

// Server is the server header of CONNECTED ("" when none).
func (c *Conn) Server() string { return c.server }

// StopOn makes Next return ErrStopped once ctx ends, even while it waits
// for a frame. Receipts being waited for are still awaited. stop undoes it.
func (c *Conn) StopOn(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() {
		c.dmu.Lock()
		defer c.dmu.Unlock()
		c.stopped = true
		if !c.inReceipt {
			_ = c.nc.SetReadDeadline(time.Unix(1, 0))
		}
	})
}

// Subscribe subscribes to destination with client-individual acks; opts
// add headers (prefetch, selector, durable subscription).
func (c *Conn) Subscribe(destination string, opts ...func(*frame.Frame) error) error {
	f := frame.New(frame.SUBSCRIBE, frame.Id, c.nextID(), frame.Destination, destination, frame.Ack, "client-individual")
	for _, o := range opts {
		if err := o(f); err != nil {
			return fmt.Errorf("subscribe %s: %w", destination, err)
		}
	}
	if err := c.writeFrame(f, nil); err != nil {
		return fmt.Errorf("subscribe %s: %w", destination, err)
	}
	return nil
}

// Next returns the next MESSAGE. An ERROR frame, a broken connection or
// silence past the heart-beat allowance is an error; ErrStopped means the
// context of StopOn ended (messages already read wait for no one: the
// broker gives them back at the disconnect).
func (c *Conn) Next() (*Message, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.isStopped() {
		return nil, ErrStopped
	}
	if len(c.pending) > 0 {
		m := c.pending[0]
		c.pending[0] = nil
		c.pending = c.pending[1:]
		return m, nil
	}
	for {
		cmd, h, body, err := c.readFrame()
		if err != nil {
			if c.isStopped() {
				return nil, ErrStopped
			}
			return nil, err
		}
		switch cmd {
		case frame.MESSAGE:
			return &Message{Header: h, Body: body, ack: h.Get(frame.Ack)}, nil
		case frame.ERROR:
			return nil, brokerError(h, body)
		}
		// A late RECEIPT (one we stopped waiting for): nothing to do.
	}
}

// Ack acknowledges m.
func (c *Conn) Ack(m *Message) error { return c.ack(m, "") }

func (c *Conn) ack(m *Message, tx string) error {
	if m.ack == "" {
		return errors.New("ack: the message has no ack header")
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	w := c.w
	w.WriteString("ACK\nid:")
	writeEscaped(w, m.ack)
	if tx != "" {
		w.WriteString("\ntransaction:")
		writeEscaped(w, tx)
	}
	w.WriteString("\n\n\x00")
	c.wrote = true
	return w.Flush()
}

// Send publishes body to destination, waiting for the broker's receipt.
// opts add headers.
func (c *Conn) Send(destination string, body []byte, opts ...func(*frame.Frame) error) error {
	id := c.nextID()
	f := frame.New(frame.SEND, frame.Destination, destination, frame.Receipt, id)
	if err := c.send(f, body, opts); err != nil {
		return err
	}
	return c.waitReceipt(id)
}

func (c *Conn) send(f *frame.Frame, body []byte, opts []func(*frame.Frame) error) error {
	for _, o := range opts {
		if err := o(f); err != nil {
			return err
		}
	}
	return c.writeFrame(f, body)
}

// Tx is a STOMP transaction.
type Tx struct {
	c  *Conn
	id string
}

// Begin starts a transaction.
func (c *Conn) Begin() (*Tx, error) {
	id := c.nextID()
	if err := c.write(frame.BEGIN, []string{frame.Transaction, id}, nil, false); err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	return &Tx{c: c, id: id}, nil
}

// Send publishes body to destination when the transaction commits.
func (t *Tx) Send(destination string, body []byte, opts ...func(*frame.Frame) error) error {
	f := frame.New(frame.SEND, frame.Destination, destination)
	opts = append(opts, func(f *frame.Frame) error { f.Header.Set(frame.Transaction, t.id); return nil })
	return t.c.send(f, body, opts)
}

// Ack acknowledges m when the transaction commits.
func (t *Tx) Ack(m *Message) error { return t.c.ack(m, t.id) }

// Abort discards the transaction.
func (t *Tx) Abort() error {
	return t.c.write(frame.ABORT, []string{frame.Transaction, t.id}, nil, false)
}

// Commit commits the transaction and waits for the broker's receipt. An
// error wrapping ErrInDoubt means the COMMIT went out unconfirmed; a failed
// write or an ERROR frame from the broker means it was not applied (a
// broker that refuses a frame answers with ERROR and closes the
// connection, which discards the open transaction).
func (t *Tx) Commit() error {
	id := t.c.nextID()
	if err := t.c.write(frame.COMMIT, []string{frame.Transaction, t.id, frame.Receipt, id}, nil, false); err != nil {
		return err
	}
	err := t.c.waitReceipt(id)
	var refused *brokerErr
	if err == nil || errors.As(err, &refused) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrInDoubt, err)
}

// Disconnect says goodbye and waits up to 5 s for the broker's receipt,
// then closes the connection. Unacknowledged messages go back to the broker.
func (c *Conn) Disconnect() error {
	id := c.nextID()
	err := c.write(frame.DISCONNECT, []string{frame.Receipt, id}, nil, false)
	if err == nil {
		c.rmu.Lock()
		c.receiptTimeout = min(c.receiptTimeout, 5*time.Second)
		c.rmu.Unlock()
		err = c.waitReceipt(id)
	}
	return errors.Join(err, c.Close())
}

// Close closes the connection at once. Idempotent.
func (c *Conn) Close() error {
	c.wmu.Lock()
	if c.closed {
		c.wmu.Unlock()
		return nil
	}
	c.closed = true
	if c.beat != nil {
		c.beat.Stop()
	}
	c.wmu.Unlock()
	return c.nc.Close()
}

func (c *Conn) nextID() string { return strconv.FormatUint(c.ids.Add(1), 10) }

// waitReceipt reads frames until the RECEIPT for id, keeping the messages
// that arrive meanwhile for Next.
func (c *Conn) waitReceipt(id string) error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.dmu.Lock()
	c.inReceipt = true
	c.dmu.Unlock()
	defer func() {
		c.dmu.Lock()
		c.inReceipt = false
		c.dmu.Unlock()
	}()
	deadline := time.Now().Add(c.receiptTimeout)
	for {
		cmd, h, body, err := c.readFrameBefore(deadline, false)
		if err != nil {
			return fmt.Errorf("waiting for receipt: %w", err)
		}
		switch cmd {
		case frame.RECEIPT:
			if h.Get(frame.ReceiptId) == id {
				return nil
			}
		case frame.MESSAGE:
			c.pending = append(c.pending, &Message{Header: h, Body: body, ack: h.Get(frame.Ack)})
		case frame.ERROR:
			return brokerError(h, body)
		}
	}
}

func (c *Conn) isStopped() bool {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	return c.stopped
}

// heartBeat sends an EOL unless a frame went out since the last tick.
func (c *Conn) heartBeat(every time.Duration) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return
	}
	if !c.wrote {
		c.w.WriteByte('\n')
		_ = c.w.Flush() // a broken connection shows up on the next read
	}
	c.wrote = false
	c.beat.Reset(every)
}

// brokerErr is a broker's ERROR frame: the broker answered, refusing.
type brokerErr struct{ msg string }

func (e *brokerErr) Error() string { return "broker error: " + e.msg }

func brokerError(h Header, body []byte) error {
	msg := h.Get(frame.Message)
	// Brokers often repeat the message header in the body: say it once.
	if b := strings.TrimSpace(string(body)); b != "" && b != msg {
		msg += ": " + b
	}
	return &brokerErr{msg: msg}
}

// --- writing ---

// write writes a frame of cmd with header pairs h and body.
func (c *Conn) write(cmd string, h []string, body []byte, contentLength bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	w := c.w
	w.WriteString(cmd)
	w.WriteByte('\n')
	escape := cmd != frame.CONNECT
	for i := 0; i+1 < len(h); i += 2 {
		if escape {
			writeEscaped(w, h[i])
			w.WriteByte(':')
			writeEscaped(w, h[i+1])
		} else {
			w.WriteString(h[i])
			w.WriteByte(':')
			w.WriteString(h[i+1])
		}
		w.WriteByte('\n')
	}
	if contentLength {
		w.WriteString("content-length:")
		w.WriteString(strconv.Itoa(len(body)))
		w.WriteByte('\n')
	}
	w.WriteByte('\n')
	w.Write(body)
	w.WriteByte(0)
	c.wrote = true
	return w.Flush()
}

// writeFrame writes f (its own content-length header, if any, is replaced).
func (c *Conn) writeFrame(f *frame.Frame, body []byte) error {
	f.Header.Del(frame.ContentLength)
	h := make([]string, 0, 2*f.Header.Len())
	for i := range f.Header.Len() {
		k, v := f.Header.GetAt(i)
		h = append(h, k, v)
	}
	return c.write(f.Command, h, body, f.Command == frame.SEND)
}

func writeEscaped(w *bufio.Writer, s string) {
	if !strings.ContainsAny(s, "\\\r\n:") {
		w.WriteString(s)
		return
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			w.WriteString(`\\`)
		case '\r':
			w.WriteString(`\r`)
		case '\n':
			w.WriteString(`\n`)
		case ':':
			w.WriteString(`\c`)
		default:
			w.WriteByte(s[i])
		}
	}
}

// --- reading ---

// readFrame reads the next frame for Next: it fails after the heart-beat
// allowance of silence (each heart-beat restarts it), and with ErrStopped
// once StopOn's context has ended.
func (c *Conn) readFrame() (string, Header, []byte, error) {
	return c.readFrameBefore(time.Time{}, true)
}

// readFrameBefore reads a frame, failing when nothing arrives before
// deadline (zero: no limit but the silence allowance) or, if stoppable,
// when StopOn's context ends.
func (c *Conn) readFrameBefore(deadline time.Time, stoppable bool) (string, Header, []byte, error) {
	arm := func() error {
		d := deadline
		if c.readLimit > 0 {
			if lim := time.Now().Add(c.readLimit); d.IsZero() || lim.Before(d) {
				d = lim
			}
		}
		c.dmu.Lock()
		defer c.dmu.Unlock()
		if stoppable && c.stopped {
			return ErrStopped
		}
		return c.nc.SetReadDeadline(d)
	}
	if err := arm(); err != nil {
		return "", nil, nil, err
	}
	return c.parseFrame(arm)
}

// parseFrame reads a frame, skipping heart-beat EOLs; onBeat, if not nil,
// runs after each.
func (c *Conn) parseFrame(onBeat func() error) (string, Header, []byte, error) {
	var line []byte
	var err error
	for {
		if line, err = c.line(); err != nil {
			return "", nil, nil, err
		}
		if len(line) > 0 {
			break
		}
		if onBeat != nil {
			if err := onBeat(); err != nil {
				return "", nil, nil, err
			}
		}
	}
	cmd := command(line)
	c.hbuf, c.offs = c.hbuf[:0], c.offs[:0]
	for {
		if line, err = c.line(); err != nil {
			return "", nil, nil, err
		}
		if len(line) == 0 {
			break
		}
		colon := indexByte(line, ':')
		if colon < 0 {
			return "", nil, nil, fmt.Errorf("malformed header line in %s frame", cmd)
		}
		start := len(c.hbuf)
		c.hbuf = append(c.hbuf, line...)
		if len(c.hbuf) > maxHeaderBytes {
			return "", nil, nil, fmt.Errorf("%s frame headers exceed %d bytes", cmd, maxHeaderBytes)
		}
		c.offs = append(c.offs, start, start+colon, len(c.hbuf))
	}
	all := string(c.hbuf) // one allocation for every header of the frame
	h := make(Header, 0, 2*len(c.offs)/3)
	unescape := cmd != frame.CONNECTED
	contentLength := -1
	for i := 0; i < len(c.offs); i += 3 {
		k, v := all[c.offs[i]:c.offs[i+1]], all[c.offs[i+1]+1:c.offs[i+2]]
		if unescape {
			k, v = unescapeValue(k), unescapeValue(v)
		}
		if k == frame.ContentLength && contentLength < 0 {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > maxBodyBytes {
				return "", nil, nil, fmt.Errorf("bad content-length %q in %s frame", v, cmd)
			}
			contentLength = n
		}
		h = append(h, k, v)
	}
	body, err := c.body(contentLength)
	if err != nil {
		return "", nil, nil, fmt.Errorf("read %s frame body: %w", cmd, err)
	}
	return cmd, h, body, nil
}

// body reads a frame's body and its NUL terminator.
func (c *Conn) body(n int) ([]byte, error) {
	if n >= 0 {
		b := make([]byte, n)
		if _, err := io.ReadFull(c.r, b); err != nil {
			return nil, err
		}
		nul, err := c.r.ReadByte()
		if err != nil {
			return nil, err
		}
		if nul != 0 {
			return nil, errors.New("frame not terminated by NUL")
		}
		return b, nil
	}
	var b []byte
	for {
		chunk, err := c.r.ReadSlice(0)
		b = append(b, chunk...)
		if len(b) > maxBodyBytes+1 {
			return nil, fmt.Errorf("body exceeds %d bytes", maxBodyBytes)
		}
		if err == nil {
			return b[:len(b)-1], nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

// line returns the next line without its EOL; the slice is valid until the
// next read.
func (c *Conn) line() ([]byte, error) {
	l, err := c.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		long := append([]byte(nil), l...)
		for errors.Is(err, bufio.ErrBufferFull) {
			if len(long) > maxHeaderBytes {
				return nil, fmt.Errorf("header line longer than %d bytes", maxHeaderBytes)
			}
			l, err = c.r.ReadSlice('\n')
			long = append(long, l...)
		}
		l = long
	}
	if err != nil {
		return nil, err
	}
	l = l[:len(l)-1]
	if n := len(l); n > 0 && l[n-1] == '\r' {
		l = l[:n-1]
	}
	return l, nil
}

// command returns the frame command of line without allocating for the
// ones a broker sends.
func command(line []byte) string {
	switch string(line) {
	case frame.MESSAGE:
		return frame.MESSAGE
	case frame.RECEIPT:
		return frame.RECEIPT
	case frame.ERROR:
		return frame.ERROR
	case frame.CONNECTED:
		return frame.CONNECTED
	}
	return string(line)
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// unescapeValue undoes STOMP 1.2 header escaping; an unknown escape is kept
// as is.
func unescapeValue(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'r':
			b.WriteByte('\r')
		case 'n':
			b.WriteByte('\n')
		case 'c':
			b.WriteByte(':')
		case '\\':
			b.WriteByte('\\')
		default:
			b.WriteByte('\\')
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
