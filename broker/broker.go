// Package broker is opsrunner's embedded single-machine STOMP 1.0/1.1/1.2
// message broker: queues, topics with durable subscriptions, transactions,
// selectors, and a bbolt journal with group commit for persistent messages.
//
// Message headers the broker adds to MESSAGE frames: message-id (stable
// across redeliveries), destination, subscription, ack (1.2 ack token, also
// sent for 1.0/1.1), priority (0–9, default 4), timestamp (ms since epoch),
// delivery-count (1 on the first delivery), and redelivered:true once a
// message has been given back by NACK, disconnect or unsubscribe.
// Messages that reach Config.MaxDeliveries are moved to the dead-letter queue
// DeadLetterDestination(destination) with an original-destination header.
package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ServerName is the value of the server header of CONNECTED frames; listener
// code recognises the embedded broker by its "opsrunner/" prefix.
const ServerName = "opsrunner/1"

// Config configures a Broker. The zero value is a usable memory-only broker
// with the defaults documented on each field. Every limit is answered with
// an ERROR frame before the connection closes.
type Config struct {
	Addr    string // listen address for ListenAndServe, e.g. "127.0.0.1:61613"
	DataDir string // bbolt journal directory; "" = memory only (persistent messages then do not survive restart)
	// Users may connect, each with its passcode, and subscribe to (read)
	// and send to (write) the destinations its patterns match. With none,
	// any login is accepted, and Serve refuses a listener that is not on a
	// loopback address.
	Users []User
	// UsersFile, when set, is a YAML file of more users (see ParseUsers;
	// at least one), read by New and read again within a second of each
	// change: new CONNECTs are checked against the new users, connections
	// already made keep what they were granted. A changed file that does
	// not load (it is malformed, or half written) leaves the users as
	// they were, with an error logged. With a users file the broker is
	// never open, even when the file and Users name nobody else.
	UsersFile      string
	ConnectTimeout time.Duration // from TCP accept to a CONNECT frame; 0 → 10s
	MaxConnections int           // connections at once; 0 → 10000
	// MaxConnectionsPerIP bounds the connections at once from one IP
	// address, loopback included (a WebSocket session counts as its TCP
	// connection); 0 → 1000.
	MaxConnectionsPerIP int
	MaxFrameBytes       int // 0 → 4 MiB
	MaxHeaders          int // 0 → 128
	MaxHeaderBytes      int // per header line; 0 → 64 KiB
	MaxHeaderTotalBytes int // all header lines of a frame; 0 → 256 KiB
	MaxDestinationBytes int // 0 → 1024
	DefaultPrefetch     int // per subscription when the client names none, 0 → 1000; requests are capped at 100000
	// HeartBeat is the shortest heart-beat interval the broker agrees to,
	// both ways: it heart-beats as often as a client asks and expects
	// heart-beats as often as a client offers, but not more often than
	// this. 0 → 1s.
	HeartBeat     time.Duration
	MaxDeliveries int // per message; reaching it on give-back moves the message to DeadLetterDestination; 0 → unlimited
	// DeadLetterExpired moves a message whose expires time passed to
	// DeadLetterDestination (with dead-letter-reason: expired) instead of
	// dropping it.
	DeadLetterExpired bool
	// MaxMemoryBytes bounds the persistent message bodies held in memory
	// across queues; past it they are read back from disk on dispatch.
	// Whatever the backlog, a queue keeps at most a window of its pending
	// messages in memory (1,000), the rest on disk only. 0 → 64 MiB.
	MaxMemoryBytes int64
	// MaxPendingBytes bounds the bytes queued for writing to one
	// connection, frames handed to the socket and not yet taken by it
	// included. At it, delivery to the connection's subscriptions pauses
	// (queue messages stay queued, on disk past MaxMemoryBytes, or go to
	// other consumers) and resumes once the connection has read down to
	// half of it; a client with twice it plus a frame queued (it sends and
	// does not read) is disconnected. It also bounds the undelivered
	// messages of a non-durable topic subscription: past it, the oldest
	// (lowest priority first) are discarded, as ActiveMQ's pending message
	// limit strategy does, with a warning logged. 0 → 4 MiB.
	MaxPendingBytes int
	Logger          *slog.Logger // nil → discard
}

func (c Config) withDefaults() Config {
	setDefault(&c.ConnectTimeout, 10*time.Second)
	setDefault(&c.MaxConnections, 10000)
	setDefault(&c.MaxConnectionsPerIP, 1000)
	setDefault(&c.MaxFrameBytes, 4<<20)
	setDefault(&c.MaxHeaders, 128)
	setDefault(&c.MaxHeaderBytes, 64<<10)
	setDefault(&c.MaxHeaderTotalBytes, 256<<10)
	setDefault(&c.MaxDestinationBytes, 1024)
	setDefault(&c.DefaultPrefetch, 1000)
	setDefault(&c.HeartBeat, time.Second)
	setDefault(&c.MaxMemoryBytes, 64<<20)
	setDefault(&c.MaxPendingBytes, 4<<20)
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

// setDefault replaces a zero or negative *v with def.
func setDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// DeadLetterDestination names the queue that receives messages of dest that
// reached Config.MaxDeliveries: "/queue/orders" → "/queue/orders.DLQ",
// "/topic/prices" → "/queue/prices.DLQ".
func DeadLetterDestination(dest string) string {
	if name, ok := cutPrefix(dest, "/topic/"); ok {
		return "/queue/" + name + ".DLQ"
	}
	return dest + ".DLQ"
}

// Broker is an embedded STOMP broker. Create it with New; all methods are
// goroutine-safe.
type Broker struct {
	cfg     Config
	log     *slog.Logger
	auth    *authenticator
	journal *journal // nil when memory only
	bootID  string

	mu       sync.Mutex // guards everything below
	queues   map[string]*queue
	durables map[string]*durableSub // by durable key
	topics   map[string]map[*queue]struct{}
	conns    map[*conn]struct{}
	perIP    map[string]int // connections by remote IP address
	refusing int            // connections being refused (over MaxConnections or MaxConnectionsPerIP)
	seq      uint64
	memBytes int64
	wbufs    sync.Pool // *bufio.Writer of writeBufferSize, used by connection writers while they write
	closed   bool

	addr      atomic.Pointer[net.Addr]
	listeners map[net.Listener]struct{}
	wg        sync.WaitGroup // connection goroutines
	quiescing atomic.Bool    // Close is answering what it applied before it kills connections
	closeOnce sync.Once
	closeErr  error
	done      chan struct{}
}

// New checks cfg.Users and reads cfg.UsersFile (when set), opens the
// journal in cfg.DataDir (when set) and recovers persisted messages and
// durable subscriptions. It does not listen; call Serve or ListenAndServe.
func New(cfg Config) (*Broker, error) {
	cfg = cfg.withDefaults()
	auth, err := newAuthenticator(cfg.Users, cfg.UsersFile != "")
	if err != nil {
		return nil, fmt.Errorf("broker users: %w", err)
	}
	var users *usersFile
	if cfg.UsersFile != "" {
		if users, err = loadUsersFile(cfg.UsersFile, auth); err != nil {
			return nil, err
		}
	}
	b := &Broker{
		cfg:       cfg,
		log:       cfg.Logger,
		auth:      auth,
		bootID:    strconv.FormatInt(time.Now().UnixNano(), 36),
		queues:    map[string]*queue{},
		durables:  map[string]*durableSub{},
		topics:    map[string]map[*queue]struct{}{},
		conns:     map[*conn]struct{}{},
		perIP:     map[string]int{},
		listeners: map[net.Listener]struct{}{},
		done:      make(chan struct{}),
	}
	if cfg.DataDir != "" {
		j, err := openJournal(cfg.DataDir, b.log)
		if err != nil {
			return nil, err
		}
		b.journal = j
		if err := b.recover(); err != nil {
			_ = j.close()
			return nil, fmt.Errorf("recovering journal: %w", err)
		}
		j.start()
	}
	if users != nil {
		b.wg.Go(func() { b.watchUsersFile(users) })
	}
	return b, nil
}

// ListenAndServe listens on cfg.Addr and serves until ctx ends or Close is
// called. It blocks; it returns nil on a clean stop.
func (b *Broker) ListenAndServe(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", b.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", b.cfg.Addr, err)
	}
	return b.Serve(ctx, ln)
}

// Serve accepts STOMP connections on ln until ctx ends or Close is called,
// then closes ln. It blocks and returns nil on a clean stop. When ctx ends,
// the broker is closed as by Close. A broker without users refuses (closes
// ln and returns an error) a listener not on a loopback address.
func (b *Broker) Serve(ctx context.Context, ln net.Listener) error {
	if err := b.checkListener(ln.Addr()); err != nil {
		_ = ln.Close()
		return err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		_ = ln.Close()
		return errors.New("broker closed")
	}
	b.listeners[ln] = struct{}{}
	b.mu.Unlock()
	a := ln.Addr()
	b.addr.Store(&a)

	stop := context.AfterFunc(ctx, func() { _ = b.Close() })
	defer stop()
	for {
		nc, err := ln.Accept()
		if err != nil {
			select {
			case <-b.done:
				return nil
			default:
			}
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("accepting: %w", err)
		}
		b.serveConn(nc)
	}
}

// ServeConn serves one already-established connection (for example one end of
// a net.Pipe) in the background. It does not block. The connection is closed
// when the client disconnects or the broker closes.
func (b *Broker) ServeConn(nc net.Conn) { b.serveConn(nc) }

func (b *Broker) serveConn(nc net.Conn) {
	c := newConn(b, nc)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		_ = nc.Close()
		return
	}
	if len(b.conns) >= b.cfg.MaxConnections {
		b.refuseConn(nc, fmt.Sprintf("too many connections: the broker accepts %d", b.cfg.MaxConnections))
		return
	}
	if c.ip != "" && b.perIP[c.ip] >= b.cfg.MaxConnectionsPerIP {
		b.refuseConn(nc, fmt.Sprintf("too many connections from %s: the broker accepts %d from one address", c.ip, b.cfg.MaxConnectionsPerIP))
		return
	}
	b.conns[c] = struct{}{}
	if c.ip != "" {
		b.perIP[c.ip]++
	}
	b.wg.Add(2)
	b.mu.Unlock()
	go func() { defer b.wg.Done(); c.writeLoop() }()
	go func() { defer b.wg.Done(); c.readLoop() }()
}

// refuseConn answers nc, over MaxConnections or MaxConnectionsPerIP, with
// an ERROR frame saying msg on a goroutine of b.wg. Called with b.mu held;
// it unlocks it.
func (b *Broker) refuseConn(nc net.Conn, msg string) {
	if b.refusing >= maxRefusing {
		b.mu.Unlock()
		_ = nc.Close()
		return
	}
	b.refusing++
	b.wg.Add(1)
	b.mu.Unlock()
	b.log.Warn("broker: refusing a connection", "remote", nc.RemoteAddr(), "reason", msg)
	go func() {
		defer b.wg.Done()
		refuse(nc, msg)
		b.mu.Lock()
		b.refusing--
		b.mu.Unlock()
	}()
}

// Addr returns the address of the last listener given to Serve, or nil
// before listening.
func (b *Broker) Addr() net.Addr {
	if a := b.addr.Load(); a != nil {
		return *a
	}
	return nil
}

// Close stops listening, closes every connection (their unacknowledged
// messages go back to their queues), flushes and closes the journal. It
// blocks until all broker goroutines have stopped and is idempotent.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		close(b.done)
		for ln := range b.listeners {
			_ = ln.Close()
		}
		conns := make([]*conn, 0, len(b.conns))
		for c := range b.conns {
			conns = append(conns, c)
		}
		b.mu.Unlock()
		b.quiesce(conns)
		for _, c := range conns {
			c.kill()
		}
		b.wg.Wait()
		if b.journal != nil {
			b.closeErr = b.journal.close()
		}
	})
	return b.closeErr
}

// quiesceTimeout bounds how long Close waits for the journal and for
// connections to take what they are owed.
const quiesceTimeout = 2 * time.Second

// quiesce answers what the broker applied before it closes: it stops
// applying frames (they are read and dropped, so that closing sends no
// reset), waits until the journal has written every frame applied (so
// that each RECEIPT, of a SEND or of a transaction's COMMIT, is queued)
// and until connections' sockets have taken what is queued; then Close
// closes them as it always did. Without it a client whose COMMIT was
// applied and written, but whose RECEIPT was cut off, cannot tell it from
// a lost one and runs it again.
func (b *Broker) quiesce(conns []*conn) {
	for _, c := range conns {
		c.discard.Store(true)
	}
	b.mu.Lock() // a frame being applied has been
	b.mu.Unlock()
	if b.journal != nil && !b.journal.idle(quiesceTimeout) {
		return
	}
	deadline := time.After(quiesceTimeout)
	for _, c := range conns {
		for !c.flushed() {
			select {
			case <-c.dead:
			case <-deadline:
				return
			case <-time.After(5 * time.Millisecond):
				continue
			}
			break
		}
	}
}

// Stats is a snapshot of one destination, for tests and metrics.
type Stats struct {
	Pending  int // messages waiting for a consumer
	InFlight int // messages delivered and not yet acknowledged
}

// QueueStats returns a snapshot of the queue named dest (for example
// "/queue/orders"); ok is false when the queue does not exist. Goroutine-safe.
func (b *Broker) QueueStats(dest string) (s Stats, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queues[dest]
	if q == nil {
		return Stats{}, false
	}
	return Stats{Pending: q.pending, InFlight: q.inflight}, true
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return s, false
}

// Start is New plus a background Serve on cfg.Addr ("" → a free port on
// 127.0.0.1), for tests, benchmarks and embedding. It returns once the
// broker listens (Addr is set); Close stops it.
func Start(cfg Config) (*Broker, error) {
	b, err := New(cfg)
	if err != nil {
		return nil, err
	}
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = b.Close()
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	a := ln.Addr()
	b.addr.Store(&a)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		_ = ln.Close()
		return nil, errors.New("broker closed")
	}
	b.wg.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		if err := b.Serve(context.Background(), ln); err != nil {
			b.log.Error("broker: serve stopped", "err", err)
		}
	}()
	return b, nil
}
