package broker

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-stomp/stomp/v3/frame"
)

const durablePrefix = "durable:"

// conn is one client connection: a reader goroutine that applies frames and
// a writer goroutine that owns all writes through a bounded queue.
type conn struct {
	b  *Broker
	nc net.Conn
	ip string // the client's IP address, "" when its address is no IP (a pipe)

	// set by the reader on CONNECT, read-only after
	grant *grant // what the client may do; nil = everything

	// guarded by b.mu
	version   string
	clientID  string
	subs      map[string]*subscription
	acks      map[string]*delivery
	ackSeq    uint64
	txs       map[string][]*frame.Frame
	connectBy time.Time    // read deadline until CONNECT
	connected atomic.Bool  // CONNECTED sent; readAfter applies
	discard   atomic.Bool  // the broker is closing: frames read are dropped unapplied
	readAfter atomic.Int64 // read deadline in ns after CONNECT; 0 = none

	wmu      sync.Mutex // guards the outbound queue below
	out      []*frame.Frame
	outBytes int
	needKick bool
	closing  bool          // write what is queued, then close
	linger   bool          // DISCONNECT with a pending receipt: the writer closes
	hbSend   time.Duration // writer heart-beat interval; 0 = none
	signal   chan struct{} // cap 1: outbound queue changed
	readDone chan struct{} // closed when the reader has stopped
	dead     chan struct{}
	killOnce sync.Once
}

func newConn(b *Broker, nc net.Conn) *conn {
	return &conn{
		b: b, nc: nc, ip: remoteIP(nc),
		subs:      map[string]*subscription{},
		acks:      map[string]*delivery{},
		txs:       map[string][]*frame.Frame{},
		connectBy: time.Now().Add(b.cfg.ConnectTimeout),
		signal:    make(chan struct{}, 1),
		readDone:  make(chan struct{}),
		dead:      make(chan struct{}),
	}
}

func frameSize(f *frame.Frame) int {
	n := len(f.Command) + len(f.Body) + 2
	for i := 0; i < f.Header.Len(); i++ {
		k, v := f.Header.GetAt(i)
		n += len(k) + len(v) + 2
	}
	return n
}

// send queues f for the writer without blocking. A client with more than
// twice MaxPendingBytes plus a frame queued (delivery stops at
// MaxPendingBytes, so only frames it provokes, such as receipts, get it
// there) is disconnected.
func (c *conn) send(f *frame.Frame) {
	c.wmu.Lock()
	if c.closing {
		c.wmu.Unlock()
		return
	}
	c.out = append(c.out, f)
	c.outBytes += frameSize(f)
	over := c.outBytes > 2*c.b.cfg.MaxPendingBytes+c.b.cfg.MaxFrameBytes
	c.wmu.Unlock()
	select {
	case c.signal <- struct{}{}:
	default:
	}
	if over {
		c.b.log.Warn("broker: disconnecting client that does not read", "remote", c.nc.RemoteAddr())
		c.kill()
	}
}

// flushed reports whether the socket has taken every frame queued for c.
func (c *conn) flushed() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.outBytes == 0
}

// throttled reports whether c has MaxPendingBytes or more queued; the
// writer then re-dispatches (kick) once it has written down to half.
func (c *conn) throttled() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.outBytes >= c.b.cfg.MaxPendingBytes {
		c.needKick = true
		return true
	}
	return false
}

// closeAfterFlush makes the writer close the connection once its queue is written.
func (c *conn) closeAfterFlush() {
	c.wmu.Lock()
	c.closing = true
	c.wmu.Unlock()
	select {
	case c.signal <- struct{}{}:
	default:
	}
}

// kill closes the connection now. Idempotent.
func (c *conn) kill() {
	c.killOnce.Do(func() {
		close(c.dead)
		_ = c.nc.Close()
	})
}

func (c *conn) writeTimeout() time.Duration { return max(3*c.b.cfg.HeartBeat, 30*time.Second) }

// writeBufferSize is the buffer a connection's writer borrows from the
// broker's pool while it writes: an idle connection holds none.
const writeBufferSize = 64 << 10

// writeLoop owns the connection's writes: it takes what send queued, writes
// it and heart-beats, until the connection dies or closes after a flush.
func (c *conn) writeLoop() {
	defer c.kill()
	var to sink // where fw writes: the borrowed buffer of the moment
	fw := frame.NewWriter(&to)
	hb := time.NewTimer(time.Hour)
	defer hb.Stop()
	for {
		c.wmu.Lock()
		out, closing, interval := c.out, c.closing, c.hbSend
		c.out = nil
		c.wmu.Unlock()
		if len(out) > 0 {
			if c.write(fw, &to, out) != nil {
				return
			}
			c.written(out)
			continue
		}
		if closing {
			c.closeWhenRead()
			return
		}
		if interval > 0 {
			hb.Reset(interval)
		}
		select {
		case <-c.signal:
		case <-c.dead:
			return
		case <-hb.C:
			if interval > 0 && c.write(fw, &to, nil) != nil {
				return
			}
		}
	}
}

// write writes frames to the socket through a buffer borrowed from the
// broker's pool, or a heart-beat when frames is empty. Each socket write
// has writeTimeout: a client that reads nothing for that long is dropped.
func (c *conn) write(fw *frame.Writer, to *sink, frames []*frame.Frame) error {
	bw, _ := c.b.wbufs.Get().(*bufio.Writer)
	if bw == nil {
		bw = bufio.NewWriterSize(nil, writeBufferSize)
	}
	bw.Reset(deadlineWriter{c})
	to.w = bw
	err := writeFrames(fw, frames)
	if err == nil {
		err = bw.Flush()
	}
	to.w = nil
	bw.Reset(nil) // keeps no reference to c in the pool
	c.b.wbufs.Put(bw)
	return err
}

func writeFrames(fw *frame.Writer, frames []*frame.Frame) error {
	if len(frames) == 0 {
		return fw.Write(nil) // heart-beat EOL
	}
	for _, f := range frames {
		if err := fw.Write(f); err != nil {
			return err
		}
	}
	return nil
}

// written accounts frames the socket has taken, and re-dispatches to c's
// subscriptions when they were paused and c is down to half of
// MaxPendingBytes.
func (c *conn) written(frames []*frame.Frame) {
	size := 0
	for _, f := range frames {
		size += frameSize(f)
	}
	c.wmu.Lock()
	c.outBytes -= size
	kick := c.needKick && c.outBytes <= c.b.cfg.MaxPendingBytes/2
	if kick {
		c.needKick = false
	}
	c.wmu.Unlock()
	if kick {
		c.b.kick(c) // the writer holds no lock here
	}
}

// sink is an io.Writer that forwards to w. A frame.Writer writes through
// it, so that the buffer under it can be borrowed per write.
type sink struct{ w io.Writer }

func (s *sink) Write(p []byte) (int, error) { return s.w.Write(p) }

// deadlineWriter sets the write deadline before every write to the
// connection, so that a client that reads slowly but steadily stays.
type deadlineWriter struct{ c *conn }

func (w deadlineWriter) Write(p []byte) (int, error) {
	_ = w.c.nc.SetWriteDeadline(time.Now().Add(w.c.writeTimeout()))
	return w.c.nc.Write(p)
}

// closeWhenRead half-closes the connection, so that the client reads EOF
// after the frames written, and waits (at most lingerTimeout) for the
// reader to stop: closing a socket with unread input resets it, and the
// client could lose the last frames (an ERROR) to the reset.
func (c *conn) closeWhenRead() {
	if !halfClose(c.nc) {
		return
	}
	t := time.NewTimer(lingerTimeout)
	defer t.Stop()
	select {
	case <-c.readDone:
	case <-c.dead:
	case <-t.C:
	}
}

// deadlineReader sets the read deadline before every read of the
// connection: CONNECT must come within ConnectTimeout of the TCP accept,
// then each frame or heart-beat within readAfter of the previous one.
type deadlineReader struct{ c *conn }

func (r deadlineReader) Read(p []byte) (int, error) {
	if !r.c.connected.Load() {
		_ = r.c.nc.SetReadDeadline(r.c.connectBy)
	} else if d := time.Duration(r.c.readAfter.Load()); d > 0 {
		_ = r.c.nc.SetReadDeadline(time.Now().Add(d))
	} else {
		_ = r.c.nc.SetReadDeadline(time.Time{})
	}
	return r.c.nc.Read(p)
}

// readLoop reads and applies the client's frames until the client
// disconnects, goes silent or breaks the protocol; a protocol error is
// answered with an ERROR frame, and what the client still sends is read
// and discarded until it closes (drain).
func (c *conn) readLoop() {
	defer c.cleanup()
	fr := newFrameReader(deadlineReader{c}, c.b.cfg)
	f, err := c.readFrames(fr)
	if err == nil {
		return
	}
	c.fail(err, f)
	c.drain()
}

// readFrames applies frames until the client stops (nil error) or fails:
// then it returns the error to answer and the frame that caused it, if any.
func (c *conn) readFrames(fr *frameReader) (*frame.Frame, error) {
	for {
		f, err := fr.read()
		if err != nil {
			var pe *protocolError
			var ne net.Error
			switch {
			case errors.As(err, &pe):
				return nil, err
			case !c.connected.Load() && errors.As(err, &ne) && ne.Timeout():
				return nil, protoErr("no CONNECT frame within %s", c.b.cfg.ConnectTimeout)
			}
			return nil, nil // the client went away or stopped heart-beating
		}
		if f == nil {
			continue
		}
		if !c.connected.Load() {
			if f.Command != frame.CONNECT && f.Command != frame.STOMP {
				return f, protoErr("expected CONNECT, got %s", f.Command)
			}
			if err := c.connect(f); err != nil {
				return f, err
			}
			fr.unescape = c.version != "1.0"
			continue
		}
		if f.Command == frame.CONNECT || f.Command == frame.STOMP {
			return f, protoErr("already connected")
		}
		stop, err := c.handle(f)
		if err != nil {
			return f, err
		}
		if stop {
			return nil, nil
		}
		if c.b.journal != nil {
			c.b.journal.waitRoom()
		}
	}
}

// drain reads and discards what the client still sends after an ERROR
// frame, for at most lingerTimeout and twice MaxFrameBytes (8 MiB at
// least), so that the close does not reset a connection the client is
// still writing an oversized frame to: it would see ECONNRESET instead of
// the ERROR.
func (c *conn) drain() {
	_ = c.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
	_, _ = io.CopyN(io.Discard, c.nc, int64(max(2*c.b.cfg.MaxFrameBytes, 8<<20)))
}

// fail sends an ERROR frame saying err and closes the connection after
// it. f, when not nil, is the frame that failed: its receipt is named.
func (c *conn) fail(err error, f *frame.Frame) {
	var headers []string
	var pe *protocolError
	if errors.As(err, &pe) {
		headers = pe.headers
	}
	cmd := ""
	if f != nil {
		cmd = f.Command
		if r, ok := f.Header.Contains(frame.Receipt); ok {
			headers = append(headers[:len(headers):len(headers)], frame.ReceiptId, r)
		}
	}
	c.b.log.Info("broker: closing a connection with an ERROR", "remote", c.nc.RemoteAddr(), "frame", cmd, "err", err)
	c.send(errorFrame(err.Error(), headers...))
	c.closeAfterFlush()
}

// cleanup runs when the reader stops: subscriptions end, unacknowledged
// messages go back to their queues, open transactions are discarded.
func (c *conn) cleanup() {
	close(c.readDone)
	b := c.b
	b.mu.Lock()
	delete(b.conns, c)
	if c.ip != "" {
		if b.perIP[c.ip]--; b.perIP[c.ip] <= 0 {
			delete(b.perIP, c.ip)
		}
	}
	var bt batch
	for _, s := range c.subs {
		b.endSub(s, &bt)
	}
	c.txs = nil
	b.finish(&bt, nil)
	b.mu.Unlock()
	c.wmu.Lock()
	closing := c.closing || c.linger
	c.wmu.Unlock()
	if !closing {
		c.kill()
		return
	}
	// the writer flushes and closes; bound how long a non-reading client holds it
	go func() {
		select {
		case <-c.dead:
		case <-time.After(c.writeTimeout()):
			c.kill()
		}
	}()
}

var supportedVersions = []string{"1.0", "1.1", "1.2"}

// negotiate returns the highest version of accept-version the broker
// speaks; the error names the supported ones in a version header, as the
// specification shows.
func negotiate(f *frame.Frame) (string, error) {
	version := ""
	accept := f.Header.Get(frame.AcceptVersion)
	if accept == "" {
		accept = "1.0"
	}
	for v := range strings.SplitSeq(accept, ",") {
		v = strings.TrimSpace(v)
		if slices.Contains(supportedVersions, v) && v > version {
			version = v
		}
	}
	if version == "" {
		list := strings.Join(supportedVersions, ",")
		return "", &protocolError{msg: "supported protocol versions are " + list, headers: []string{frame.Version, list}}
	}
	return version, nil
}

// negotiateHeartBeat returns how often the broker heart-beats a client
// whose CONNECT offered heart-beats every cx and asked for them every cy,
// and how often it expects them; 0 is never, and floor the shortest
// interval either way. CONNECTED states these, not the floor: a client
// that reads the server's half as a promise (go-stomp does) and asked for
// none would otherwise drop a quiet connection for want of heart-beats
// that never come.
func negotiateHeartBeat(cx, cy, floor time.Duration) (send, expect time.Duration) {
	if cy > 0 {
		send = max(cy, floor)
	}
	if cx > 0 {
		expect = max(cx, floor)
	}
	return send, expect
}

// connect authenticates a CONNECT or STOMP frame and answers CONNECTED.
// It blocks for a bcrypt check the first time a passcode is seen.
func (c *conn) connect(f *frame.Frame) error {
	b := c.b
	version, err := negotiate(f)
	if err != nil {
		return err
	}
	g, err := b.auth.authenticate(f.Header.Get(frame.Login), f.Header.Get(frame.Passcode))
	if err != nil {
		b.log.Info("broker: access refused", "login", f.Header.Get(frame.Login), "remote", c.nc.RemoteAddr())
		return err
	}
	c.grant = g
	var cx, cy time.Duration
	if hb, ok := f.Header.Contains(frame.HeartBeat); ok && version != "1.0" {
		var err error
		if cx, cy, err = frame.ParseHeartBeat(hb); err != nil {
			return fmt.Errorf("bad heart-beat header %q", hb)
		}
	}
	send, expect := negotiateHeartBeat(cx, cy, b.cfg.HeartBeat)
	b.mu.Lock()
	c.version = version
	c.clientID = f.Header.Get("client-id")
	c.readAfter.Store(0)
	if expect > 0 {
		c.readAfter.Store(int64(2*expect + time.Second))
	}
	b.mu.Unlock()
	c.wmu.Lock()
	c.hbSend = send
	c.wmu.Unlock()
	c.connected.Store(true)
	cf := frame.New(frame.CONNECTED,
		frame.Version, version,
		frame.Server, ServerName,
		frame.Session, fmt.Sprintf("%p", c),
	)
	if version != "1.0" {
		cf.Header.Add(frame.HeartBeat, strconv.FormatInt(send.Milliseconds(), 10)+","+strconv.FormatInt(expect.Milliseconds(), 10))
	}
	c.send(cf)
	return nil
}

// destination returns the destination of f, a SEND or SUBSCRIBE, once it
// is a valid one (checkDestination) the client has permission p on.
func (c *conn) destination(f *frame.Frame, p Permission) (string, error) {
	dest, err := required(f, frame.Destination)
	if err != nil {
		return "", err
	}
	if err := checkDestination(dest, c.b.cfg.MaxDestinationBytes); err != nil {
		return "", err
	}
	if !c.grant.allows(p, dest) {
		return "", protoErr("access denied: user %q has no %s permission on %s", c.grant.login, p, dest)
	}
	return dest, nil
}

func required(f *frame.Frame, name string) (string, error) {
	v, ok := f.Header.Contains(name)
	if !ok || v == "" {
		return "", protoErr("%s frame needs a %s header", f.Command, name)
	}
	return v, nil
}

// handle applies one frame of a connected client. stop means the client
// disconnected.
func (c *conn) handle(f *frame.Frame) (stop bool, err error) {
	b := c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if c.discard.Load() {
		return false, nil
	}
	var bt batch
	switch f.Command {
	case frame.SEND, frame.ACK, frame.NACK:
		if tx, ok := f.Header.Contains(frame.Transaction); ok {
			ops, open := c.txs[tx]
			if !open {
				return false, protoErr("unknown transaction %q", tx)
			}
			var err error
			if f.Command == frame.SEND {
				_, err = c.destination(f, Write)
			} else {
				_, err = c.findDelivery(f)
			}
			if err != nil {
				return false, err
			}
			c.txs[tx] = append(ops, f)
			break
		}
		if err := c.apply(f, &bt); err != nil {
			return false, err
		}
	case frame.SUBSCRIBE:
		if err := c.subscribe(f, &bt); err != nil {
			return false, err
		}
	case frame.UNSUBSCRIBE:
		if err := c.unsubscribe(f, &bt); err != nil {
			return false, err
		}
	case frame.BEGIN:
		tx, err := required(f, frame.Transaction)
		if err != nil {
			return false, err
		}
		if _, dup := c.txs[tx]; dup {
			return false, protoErr("transaction %q already begun", tx)
		}
		c.txs[tx] = []*frame.Frame{}
	case frame.COMMIT, frame.ABORT:
		tx, err := required(f, frame.Transaction)
		if err != nil {
			return false, err
		}
		ops, open := c.txs[tx]
		if !open {
			return false, protoErr("unknown transaction %q", tx)
		}
		delete(c.txs, tx)
		if f.Command == frame.COMMIT {
			for _, op := range ops {
				// acks of deliveries settled since are skipped: the commit stays atomic
				_ = c.apply(op, &bt)
			}
		}
	case frame.DISCONNECT:
		stop = true
	}
	var done func(error)
	if r, ok := f.Header.Contains(frame.Receipt); ok {
		if stop {
			c.wmu.Lock()
			c.linger = true
			c.wmu.Unlock()
		}
		done = func(err error) {
			if err != nil {
				c.fail(fmt.Errorf("journal write failed: %w", err), f)
				return
			}
			c.send(frame.New(frame.RECEIPT, frame.ReceiptId, r))
			if stop {
				c.closeAfterFlush()
			}
		}
	} else if stop {
		c.closeAfterFlush()
	}
	b.finish(&bt, done)
	return stop, nil
}

// apply performs a SEND, ACK or NACK. Called with b.mu held.
func (c *conn) apply(f *frame.Frame, bt *batch) error {
	b := c.b
	if f.Command == frame.SEND {
		if _, err := c.destination(f, Write); err != nil {
			return err
		}
		b.publish(b.newEntry(f), bt)
		return nil
	}
	if f.Command == frame.NACK && c.version == "1.0" {
		return protoErr("NACK is not part of STOMP 1.0")
	}
	d, err := c.findDelivery(f)
	if err != nil {
		return err
	}
	s := d.s
	var ds []*delivery
	if s.mode == ackClient {
		for el := s.unacked.Front(); el != nil; el = el.Next() {
			x := el.Value.(*delivery)
			ds = append(ds, x)
			if x == d {
				break
			}
		}
	} else {
		ds = []*delivery{d}
	}
	if f.Command == frame.ACK {
		for _, x := range ds {
			b.settle(x, bt)
		}
		return nil
	}
	for i := len(ds) - 1; i >= 0; i-- { // front-pushes in reverse keep the original order
		b.giveBack(ds[i], bt)
	}
	return nil
}

// findDelivery resolves an ACK or NACK by id (1.2) or message-id [+ subscription] (1.0, 1.1).
func (c *conn) findDelivery(f *frame.Frame) (*delivery, error) {
	if id, ok := f.Header.Contains(frame.Id); ok {
		if d := c.acks[id]; d != nil {
			return d, nil
		}
		return nil, protoErr("%s for unknown ack id %q", f.Command, id)
	}
	mid, ok := f.Header.Contains(frame.MessageId)
	if !ok {
		return nil, protoErr("%s frame needs an id or message-id header", f.Command)
	}
	if sid, ok := f.Header.Contains(frame.Subscription); ok {
		s := c.subs[sid]
		if s == nil {
			return nil, protoErr("%s for unknown subscription %q", f.Command, sid)
		}
		if d := s.byMsgID[mid]; d != nil {
			return d, nil
		}
		for _, other := range c.subs {
			if other.byMsgID[mid] != nil {
				return nil, protoErr("%s: message-id %q was delivered to subscription %q, not %q", f.Command, mid, other.id, sid)
			}
		}
	} else {
		for _, s := range c.subs {
			if d := s.byMsgID[mid]; d != nil {
				return d, nil
			}
		}
	}
	return nil, protoErr("%s for unknown message-id %q", f.Command, mid)
}

func isTrue(f *frame.Frame, name string) bool { return f.Header.Get(name) == "true" }

// prefetch reads prefetch-count or activemq.prefetchSize.
func (c *conn) prefetch(f *frame.Frame) int {
	n := c.b.cfg.DefaultPrefetch
	for _, h := range []string{"prefetch-count", "activemq.prefetchSize"} {
		if v, ok := f.Header.Contains(h); ok {
			if p, err := strconv.Atoi(v); err == nil && p > 0 {
				n = min(p, 100000)
			}
			break
		}
	}
	return n
}

func (c *conn) subscribe(f *frame.Frame, bt *batch) error {
	b := c.b
	dest, err := c.destination(f, Read)
	if err != nil {
		return err
	}
	id, ok := f.Header.Contains(frame.Id)
	if !ok {
		if c.version != "1.0" {
			return protoErr("SUBSCRIBE frame needs an id header")
		}
		id = dest
	}
	if c.subs[id] != nil {
		return protoErr("subscription id %q already in use", id)
	}
	s := &subscription{c: c, id: id, dest: dest, prefetch: c.prefetch(f), byMsgID: map[string]*delivery{}}
	switch f.Header.Get(frame.Ack) {
	case "", "auto":
		s.mode = ackAuto
	case "client":
		s.mode = ackClient
	case "client-individual":
		s.mode = ackClientIndividual
	default:
		return protoErr("bad ack mode %q", f.Header.Get(frame.Ack))
	}
	selText := strings.TrimSpace(f.Header.Get("selector"))
	var sel *selector
	if selText != "" {
		if sel, err = parseSelector(selText); err != nil {
			return protoErr("bad selector: %v", err)
		}
	}
	switch {
	case !isTopic(dest):
		s.sel = sel
		s.q = b.queueFor(dest)
	case durableKey(f, c.clientID) != "":
		key := durableKey(f, c.clientID)
		ds := b.durables[key]
		if ds != nil && ds.active != nil {
			return protoErr("durable subscription %q is already active", key)
		}
		if ds == nil || ds.topic != dest || ds.sel != selText {
			if ds != nil {
				b.removeDurable(ds, bt)
			}
			ds = &durableSub{key: key, topic: dest, sel: selText}
			if _, err := b.newDurableQueue(ds); err != nil {
				return protoErr("bad selector: %v", err)
			}
			if b.journal != nil {
				bt.ops = append(bt.ops, jop{bucket: bucketSubs, key: []byte(key), val: []byte(dest + "\x00" + selText)})
			}
		}
		ds.active = s
		s.q = ds.q
	default:
		q := &queue{dest: dest, filter: sel, ephemeral: true}
		b.topicSet(dest)[q] = struct{}{}
		s.q = q
	}
	c.subs[id] = s
	s.q.consumers = append(s.q.consumers, s)
	bt.touch(s.q)
	return nil
}

// durableKey names the durable subscription a SUBSCRIBE asks for, or "".
func durableKey(f *frame.Frame, clientID string) string {
	if name := f.Header.Get("activemq.subscriptionName"); name != "" {
		return clientID + ":" + name
	}
	if isTrue(f, "durable") || isTrue(f, "persistent") {
		if id := f.Header.Get(frame.Id); id != "" {
			return clientID + ":" + id
		}
	}
	return ""
}

func (b *Broker) topicSet(dest string) map[*queue]struct{} {
	m := b.topics[dest]
	if m == nil {
		m = map[*queue]struct{}{}
		b.topics[dest] = m
	}
	return m
}

// newDurableQueue registers ds with its queue and topic. Called with b.mu held.
func (b *Broker) newDurableQueue(ds *durableSub) (*queue, error) {
	var sel *selector
	if ds.sel != "" {
		var err error
		if sel, err = parseSelector(ds.sel); err != nil {
			return nil, err
		}
	}
	ds.q = &queue{name: durablePrefix + ds.key, dest: ds.topic, filter: sel, durable: ds}
	b.durables[ds.key] = ds
	b.topicSet(ds.topic)[ds.q] = struct{}{}
	return ds.q, nil
}

// removeDurable deletes a durable subscription and its messages.
func (b *Broker) removeDurable(ds *durableSub, bt *batch) {
	delete(b.durables, ds.key)
	delete(b.topics[ds.topic], ds.q)
	ds.q.removed = true
	b.clear(ds.q, bt)
	if b.journal != nil {
		bt.ops = append(bt.ops, jop{bucket: bucketSubs, del: true, key: []byte(ds.key)})
	}
}

func (c *conn) unsubscribe(f *frame.Frame, bt *batch) error {
	id, ok := f.Header.Contains(frame.Id)
	if !ok {
		if c.version != "1.0" {
			return protoErr("UNSUBSCRIBE frame needs an id header")
		}
		id = f.Header.Get(frame.Destination)
	}
	s := c.subs[id]
	if s == nil {
		return protoErr("no subscription %q", id)
	}
	c.b.endSub(s, bt)
	if ds := s.q.durable; ds != nil && (isTrue(f, "durable") || isTrue(f, "persistent") || f.Header.Get("activemq.subscriptionName") != "") {
		c.b.removeDurable(ds, bt)
	}
	return nil
}

// endSub detaches s: its unacknowledged messages go back, an ephemeral topic
// queue is discarded, a durable one stays. Called with b.mu held.
func (b *Broker) endSub(s *subscription, bt *batch) {
	c := s.c
	delete(c.subs, s.id)
	q := s.q
	q.consumers = slices.DeleteFunc(q.consumers, func(x *subscription) bool { return x == s })
	if q.durable != nil && q.durable.active == s {
		q.durable.active = nil
	}
	if q.ephemeral {
		q.removed = true
		delete(b.topics[q.dest], q)
		if len(b.topics[q.dest]) == 0 {
			delete(b.topics, q.dest)
		}
	}
	var ds []*delivery
	for el := s.unacked.Front(); el != nil; el = el.Next() {
		ds = append(ds, el.Value.(*delivery))
	}
	for i := len(ds) - 1; i >= 0; i-- {
		b.giveBack(ds[i], bt)
	}
	if q.ephemeral {
		b.clear(q, bt)
		if q.discarded > 0 {
			b.log.Warn("broker: slow topic subscriber ended", "destination", q.dest, "subscription", s.id,
				"remote", c.nc.RemoteAddr(), "discarded", q.discarded)
		}
	}
}
