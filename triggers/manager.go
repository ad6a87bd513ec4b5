package triggers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/opsrunner/opsrunner/cluster"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// ListenerSpec is one enabled listener as the agent wants it running.
type ListenerSpec struct {
	// ID is "<project>/<listener name>", unique in the agent.
	ID      string
	Project string
	Version int
	// Listener has the defaults of scripts.Load applied; the Manager applies
	// its own defaults again for zero fields.
	Listener scripts.Listener
}

// ManagerConfig configures a Manager. Coordinator is required; Store nil
// means dead letters are published but not recorded, and restarts of a
// redelivered message are not counted (each redelivery counts one attempt
// more than its copy's; the store counts them otherwise); Slots nil means
// unbounded; ProcessedRetention zero means 24h; Logger nil means
// slog.Default().
type ManagerConfig struct {
	Agent string
	// Connections by name; "default" must exist.
	Connections map[string]ConnConfig
	Coordinator cluster.Coordinator
	Store       store.Store
	// Handler returns the handler of a listener's deliveries: it runs the
	// operations due (see Handler). nil runs nothing: every delivery commits.
	Handler func(spec ListenerSpec) Handler
	// ClaimLease is a message claim's lease; zero means ClaimLease.
	ClaimLease time.Duration
	Slots      *Slots
	// Workers are the agent's workers (the runs executing a script); with
	// Slots, they say how loaded the agent is. nil: Slots alone.
	Workers            *Slots
	ProcessedRetention time.Duration
	Logger             *slog.Logger
}

// ListenerStatus is a snapshot of one listener.
type ListenerStatus struct {
	ID          string `json:"id"`
	Project     string `json:"project"`
	Name        string `json:"name"`
	Destination string `json:"destination"`
	// State is "listening", "connecting", "paused", "stopping", "stopped" or "error: ...".
	State      string           `json:"status"`
	Connection string           `json:"connection"`
	BrokerKind string           `json:"brokerKind,omitempty"`
	Consumers  int              `json:"consumers"`
	InFlight   int              `json:"inFlight"`
	Counts     map[string]int64 `json:"counts"`
}

// Manager runs the agent's broker listeners. Its methods are safe for
// concurrent use. Make it with NewManager; nothing runs before Run.
type Manager struct {
	cfg  ManagerConfig
	gate *gate

	notify chan struct{}

	mu       sync.Mutex
	desired  map[string]ListenerSpec
	active   map[string]*listener
	draining map[*listener]struct{}

	sendMu  sync.Mutex
	senders map[string]*stomp.Conn
}

// NewManager returns a Manager for cfg. It does not connect anywhere.
func NewManager(cfg ManagerConfig) *Manager {
	if cfg.ProcessedRetention <= 0 {
		cfg.ProcessedRetention = 24 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ClaimLease <= 0 {
		cfg.ClaimLease = ClaimLease
	}
	return &Manager{
		cfg:      cfg,
		gate:     newGate(),
		notify:   make(chan struct{}, 1),
		desired:  map[string]ListenerSpec{},
		active:   map[string]*listener{},
		draining: map[*listener]struct{}{},
		senders:  map[string]*stomp.Conn{},
	}
}

// Run owns every listener goroutine until ctx ends; then it stops taking
// deliveries, waits for in-flight ones to settle (each bounded by its ack
// timeout) and returns nil. It blocks; call it once.
func (m *Manager) Run(ctx context.Context) error {
	if m.cfg.Coordinator == nil {
		return errors.New("listener manager: no coordinator")
	}
	var wg sync.WaitGroup
	for {
		m.reconcile(ctx, &wg)
		select {
		case <-ctx.Done():
			m.mu.Lock()
			for id, l := range m.active {
				l.cancel()
				m.draining[l] = struct{}{}
				delete(m.active, id)
			}
			m.mu.Unlock()
			wg.Wait()
			m.closeSenders()
			return nil
		case <-m.notify:
		}
	}
}

// Apply sets the desired set of enabled listeners: new ones start, missing
// ones stop (in-flight deliveries finish, the rest stay on the broker),
// changed ones restart. It does not block and may be called before Run.
func (m *Manager) Apply(specs []ListenerSpec) {
	want := make(map[string]ListenerSpec, len(specs))
	for _, s := range specs {
		want[s.ID] = s
	}
	m.mu.Lock()
	m.desired = want
	m.mu.Unlock()
	select {
	case m.notify <- struct{}{}:
	default:
	}
}

func (m *Manager) reconcile(ctx context.Context, wg *sync.WaitGroup) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, l := range m.active {
		want, ok := m.desired[id]
		if ok && reflect.DeepEqual(want, l.spec) && m.cfg.Connections[connName(want)] == l.cc {
			continue
		}
		l.cancel()
		l.setState("stopping")
		m.draining[l] = struct{}{}
		delete(m.active, id)
	}
	for id, spec := range m.desired {
		if _, ok := m.active[id]; ok {
			continue
		}
		cc, ok := m.cfg.Connections[connName(spec)]
		lctx, cancel := context.WithCancel(ctx)
		l := &listener{
			m: m, spec: spec, cc: cc, pol: policyFor(m.cfg.Agent, spec),
			log: m.cfg.Logger, cancel: cancel, done: make(chan struct{}), state: "connecting",
		}
		if cc.Name == "" {
			l.cc.Name = connName(spec)
		}
		l.handler = l.chain(m.handlerFor(spec))
		m.active[id] = l
		if !ok {
			l.state = fmt.Sprintf("error: unknown connection %q", connName(spec))
			close(l.done)
			continue
		}
		wg.Go(func() {
			l.run(lctx)
			m.mu.Lock()
			delete(m.draining, l)
			m.mu.Unlock()
		})
	}
}

// handlerFor is the agent's handler for spec, or one that commits.
func (m *Manager) handlerFor(spec ListenerSpec) Handler {
	if m.cfg.Handler != nil {
		return m.cfg.Handler(spec)
	}
	return func(context.Context, *Delivery) error { return nil }
}

func connName(s ListenerSpec) string {
	if s.Listener.Connection == "" {
		return "default"
	}
	return s.Listener.Connection
}

// Status returns a snapshot of every running or draining listener, by ID.
func (m *Manager) Status() []ListenerStatus {
	m.mu.Lock()
	ls := make([]*listener, 0, len(m.active)+len(m.draining))
	for _, l := range m.active {
		ls = append(ls, l)
	}
	for l := range m.draining {
		ls = append(ls, l)
	}
	m.mu.Unlock()
	out := make([]ListenerStatus, 0, len(ls))
	for _, l := range ls {
		l.mu.Lock()
		st := ListenerStatus{
			ID: l.spec.ID, Project: l.spec.Project, Name: l.spec.Listener.Name,
			Destination: l.spec.Listener.Destination, State: l.state, Connection: l.cc.Name,
			BrokerKind: l.kind, Consumers: l.pol.consumers, InFlight: int(l.inFlight.Load()),
			Counts: map[string]int64{},
		}
		l.mu.Unlock()
		if st.State == "listening" && m.gate.paused() {
			st.State = "paused"
		}
		for i, o := range outcomes {
			st.Counts[o] = l.counts[i].Load()
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b ListenerStatus) int {
		if a.ID == b.ID {
			return 0
		}
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	return out
}

// SetPaused pauses (true) or resumes (false) every listener: paused
// listeners finish their in-flight deliveries and disconnect, so their
// messages stay on the broker. Used when the cluster loses quorum.
// Idempotent and non-blocking.
func (m *Manager) SetPaused(paused bool) { m.gate.set(paused) }

// Send publishes body to destination on the named connection outside any
// delivery, waiting for the broker's receipt. persistent defaults to true.
// Safe for concurrent use; it blocks for the round trip.
func (m *Manager) Send(ctx context.Context, connection, destination string, body []byte, headers map[string]string) error {
	if connection == "" {
		connection = "default"
	}
	cc, ok := m.cfg.Connections[connection]
	if !ok {
		return fmt.Errorf("send to %s: unknown connection %q", destination, connection)
	}
	if cc.Name == "" {
		cc.Name = connection
	}
	m.sendMu.Lock()
	defer m.sendMu.Unlock()
	var err error
	for range 2 {
		conn := m.senders[connection]
		if conn == nil {
			if conn, err = dial(ctx, cc, nil); err != nil {
				return fmt.Errorf("send to %s: %w", destination, err)
			}
			m.senders[connection] = conn
		}
		if err = conn.Send(destination, "", body, sendOpts(headers), stomp.SendOpt.Receipt); err == nil {
			return nil
		}
		_ = conn.MustDisconnect()
		delete(m.senders, connection)
	}
	return fmt.Errorf("send to %s: %w", destination, err)
}

func (m *Manager) closeSenders() {
	m.sendMu.Lock()
	defer m.sendMu.Unlock()
	for name, c := range m.senders {
		_ = c.Disconnect()
		delete(m.senders, name)
	}
}

// Replay republishes a dead letter's body and headers, without the cause
// headers, to its original destination, on the connection of its listener
// (or "default" when that listener is not running). The copy keeps the
// original message id (HeaderMessageID), so the run history shows the
// whole story under it, and the operations the dead letter names
// (HeaderOperations): those that committed do not run again. It blocks for
// the broker's receipt. The store record is left to the caller.
func (m *Manager) Replay(ctx context.Context, dl store.DeadLetter) error {
	conn := "default"
	m.mu.Lock()
	if s, ok := m.desired[dl.Listener]; ok {
		conn = connName(s)
	}
	m.mu.Unlock()
	h := copyHeaders(maps.All(dl.Headers), causeHeaders)
	if dl.MessageID != "" {
		h[HeaderMessageID] = dl.MessageID
	}
	if err := m.Send(ctx, conn, dl.Destination, []byte(dl.Body), h); err != nil {
		return fmt.Errorf("replay dead letter %s: %w", dl.ID, err)
	}
	return nil
}

// gate is the pause switch shared by all consumers.
type gate struct {
	mu     sync.Mutex
	p      bool
	resume chan struct{} // closed when unpaused; replaced on pause
	subs   map[int]func()
	next   int
}

func newGate() *gate {
	g := &gate{resume: make(chan struct{}), subs: map[int]func(){}}
	close(g.resume)
	return g
}

func (g *gate) paused() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.p
}

// wait blocks while paused; false when ctx ended first.
func (g *gate) wait(ctx context.Context) bool {
	g.mu.Lock()
	ch := g.resume
	g.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// onPause registers f to be called on the next pause; stop unregisters it.
func (g *gate) onPause(f func()) (stop func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.p {
		f()
		return func() {}
	}
	id := g.next
	g.next++
	g.subs[id] = f
	return func() {
		g.mu.Lock()
		delete(g.subs, id)
		g.mu.Unlock()
	}
}

func (g *gate) set(p bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p == g.p {
		return
	}
	g.p = p
	if p {
		g.resume = make(chan struct{})
		for id, f := range g.subs {
			f()
			delete(g.subs, id)
		}
		return
	}
	close(g.resume)
}
