// Package agent wires one opsrunner process together: configuration, store,
// coordinator, embedded broker, JS engine, listeners and the HTTP server.
// It owns the live project registry and implements api.Backend.
package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opsrunner/opsrunner/api"
	"github.com/opsrunner/opsrunner/broker"
	"github.com/opsrunner/opsrunner/cluster"
	"github.com/opsrunner/opsrunner/console"
	"github.com/opsrunner/opsrunner/egress"
	"github.com/opsrunner/opsrunner/runtime"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/secrets"
	"github.com/opsrunner/opsrunner/store"
	"github.com/opsrunner/opsrunner/triggers"
	"github.com/redis/go-redis/v9"
)

// Version is the agent's version, set at build time with -ldflags.
var Version = "dev"

// Agent is one opsrunner process. Create it with New, run it with Serve.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	started time.Time

	store  store.Store
	coord  cluster.Coordinator
	engine *runtime.Engine
	// workers bound the runs executing JavaScript (the engine takes one
	// while a script executes); slots bound the runs in progress, waiting
	// ones included (max_inflight): webhooks, deliveries and queued runs
	// take one for their whole run.
	workers   *triggers.Slots
	slots     *triggers.Slots
	listeners *triggers.Manager
	metrics   *metrics
	// schedMetrics are the schedules' series, on metrics' registry.
	schedMetrics *scheduleMetrics
	conns        map[string]triggers.ConnConfig
	kinds        brokerKinds
	view         clusterView
	states       stateCache
	redis        *redis.Client  // nil without a cluster
	jobs         *jobs          // the cluster's async queue; nil without a cluster
	vault        *secrets.Vault // project secrets, sealed in the store
	egress       *egress.Client // the HTTP client of fetch

	projects atomic.Pointer[map[string]*scripts.Project]
	deployMu sync.Mutex // serialises deploys, rollbacks and state changes

	// background runs (async webhooks, RunOperation(wait=false)).
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup

	active activeRuns

	handler  http.Handler // the HTTP API and webhooks
	certs    *certFiles   // the HTTP server's TLS certificate; nil: plain HTTP
	httpLn   net.Listener
	brokerLn net.Listener
	// brokerWSLn is the embedded broker's WebSocket listener, set by
	// startBroker when broker_ws_addr is.
	brokerWSLn net.Listener
	// brokerTLSLn is the embedded broker's TLS listener, set by
	// startBroker when broker_tls_addr is.
	brokerTLSLn net.Listener
	// brokerUsers are the embedded broker's users: broker_users and the
	// agent's own (nil without broker_users: an open broker on loopback).
	brokerUsers []broker.User
	ready       chan struct{}
}

// New builds an agent from cfg (validated here). It opens the store and
// binds the listening sockets, so that the caller knows the addresses before
// Serve; it starts no goroutines.
func New(cfg Config, log *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{cfg: cfg, log: log, started: time.Now().UTC(), ready: make(chan struct{})}
	empty := map[string]*scripts.Project{}
	a.projects.Store(&empty)
	opts, optsErr := a.serveOptions(cfg) // tokens, metrics token, TLS
	if optsErr != nil {
		return nil, optsErr
	}
	opts.MaxBodyBytes, opts.Bundle, opts.Logger = cfg.MaxBodyBytes, scripts.Limits{MaxBundleBytes: cfg.MaxBundleBytes}, log
	opts.Console = console.Handler()
	a.handler = api.New(a, opts)
	a.bgCtx, a.bgCancel = context.WithCancel(context.Background())
	a.metrics = newMetrics(a)
	a.schedMetrics = newScheduleMetrics(a.metrics.reg)

	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	var err error
	if a.egress, err = newEgress(cfg.Egress); err != nil {
		return nil, err
	}
	if err := a.listenBroker(&cfg); err != nil {
		return nil, err
	}
	if a.conns, err = connConfigs(cfg); err != nil {
		if a.brokerLn != nil {
			a.brokerLn.Close()
		}
		return nil, err
	}
	if a.redis, a.store, a.coord, err = openState(&cfg, log, a.metrics); err != nil {
		if a.brokerLn != nil {
			a.brokerLn.Close()
		}
		return nil, err
	}
	a.cfg.AgentID = cfg.AgentID // openState may have taken a kept one
	if a.vault, err = openVault(cfg, a.store, log); err != nil {
		if a.brokerLn != nil {
			a.brokerLn.Close()
		}
		a.closeState()
		return nil, err
	}
	if a.redis != nil {
		a.jobs = newJobs(a.redis, cfg.AgentID)
	}
	a.workers, a.slots = triggers.NewSlots(cfg.Workers), triggers.NewSlots(cfg.MaxInflight)
	a.engine, a.listeners = a.newEngine(cfg, log), a.newListeners(cfg, log)

	if a.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		if a.brokerLn != nil {
			a.brokerLn.Close()
		}
		a.closeState()
		return nil, fmt.Errorf("http listen %s: %w", cfg.HTTPAddr, err)
	}
	a.endInterruptedRuns(context.Background())
	if err := a.loadProjects(context.Background()); err != nil {
		a.httpLn.Close()
		if a.brokerLn != nil {
			a.brokerLn.Close()
		}
		a.closeState()
		return nil, err
	}
	return a, nil
}

// listenBroker opens the embedded broker's listener, when the agent runs
// one, and points the default connection at its bound address (the
// configured one may have been port 0).
func (a *Agent) listenBroker(cfg *Config) error {
	if !cfg.EmbeddedBroker() {
		return nil
	}
	ln, err := net.Listen("tcp", cfg.EmbeddedBrokerAddr)
	if err != nil {
		return fmt.Errorf("embedded broker listen %s: %w", cfg.EmbeddedBrokerAddr, err)
	}
	a.brokerLn = ln
	if c := cfg.Connections["default"]; c.URL == "stomp://"+cfg.EmbeddedBrokerAddr {
		c.URL = "stomp://" + ln.Addr().String()
		cfg.Connections["default"] = c
	}
	a.brokerUsers = embeddedBrokerUsers(*cfg, ln.Addr().String())
	return nil
}

// newEngine returns the script runtime of the agent.
func (a *Agent) newEngine(cfg Config, log *slog.Logger) *runtime.Engine {
	return runtime.New(runtime.Config{
		Agent:       cfg.AgentID,
		Projects:    a,
		Dispatcher:  dispatcher{a},
		Sender:      sender{a},
		Workers:     a.workers,
		MaxIdle:     cfg.MaxInflight, // each run in progress may hold a runtime
		Fetcher:     fetcher{a.egress},
		Secrets:     a,
		Confine:     a.confine,
		MemoryLimit: cfg.MemoryLimit,
		Logger:      log,
	})
}

// newListeners returns the listener manager, its deliveries handled by
// listenerHandler. In a cluster it starts paused: it listens only once
// quorum is known (the first heartbeat).
func (a *Agent) newListeners(cfg Config, log *slog.Logger) *triggers.Manager {
	m := triggers.NewManager(triggers.ManagerConfig{
		Agent:       cfg.AgentID,
		Connections: a.conns,
		Coordinator: a.coord,
		Store:       a.store,
		Handler:     a.listenerHandler,
		Slots:       a.slots,
		Workers:     a.workers,
		Logger:      log,
	})
	if cfg.RedisURL != "" {
		a.view.paused = true
		m.SetPaused(true)
	}
	return m
}

// openState opens the store and coordinator: bbolt and local without Redis.
// With bbolt, an agent id that Defaults made up is replaced by the one kept
// in the data dir (see keepAgentID), and m observes its writes and run log
// appends.
func openState(cfg *Config, log *slog.Logger, m *metrics) (*redis.Client, store.Store, cluster.Coordinator, error) {
	if cfg.RedisURL != "" {
		return openRedis(*cfg)
	}
	st, err := store.OpenBolt(filepath.Join(cfg.DataDir, "opsrunner.db"), store.BoltOptions{
		Retention:   store.Retention{MaxRuns: cfg.RunRetention.MaxRuns, MaxAge: time.Duration(cfg.RunRetention.MaxAge)},
		OnFlush:     m.observeFlush,
		OnLogAppend: m.observeLogAppend,
		// sync flushes at every run: a log append costs one fdatasync
		// where a bbolt commit costs two and whole pages.
		SyncLog: cfg.RunDurability != RunDurabilityBatched,
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open store: %w", err)
	}
	if cfg.generatedID != "" && cfg.AgentID == cfg.generatedID {
		// The store's file lock makes the data dir this agent's alone.
		id, err := keepAgentID(cfg.DataDir, cfg.AgentID)
		if err != nil {
			log.Warn("agent id not kept: it changes at the next start", "agent", cfg.AgentID, "error", err)
		} else {
			cfg.AgentID = id
		}
	}
	return nil, st, cluster.NewLocal(cfg.AgentID), nil
}

func (a *Agent) closeState() {
	if a.coord != nil {
		a.coord.Close()
	}
	if a.store != nil {
		a.store.Close()
	}
	if a.redis != nil {
		a.redis.Close()
	}
	if a.engine != nil {
		a.engine.Close()
	}
	if a.egress != nil {
		a.egress.Close()
	}
}

// HTTPAddr is the address the API listens on.
func (a *Agent) HTTPAddr() string { return a.httpLn.Addr().String() }

// Handler is the agent's HTTP API and webhooks, as Serve serves them on
// HTTPAddr; it answers once Started is closed.
func (a *Agent) Handler() http.Handler { return a.handler }

// BrokerAddr is the embedded broker's address, "" when none runs.
func (a *Agent) BrokerAddr() string {
	if a.brokerLn == nil {
		return ""
	}
	return a.brokerLn.Addr().String()
}

// Started is closed once Serve serves.
func (a *Agent) Started() <-chan struct{} { return a.ready }

// Serve serves until ctx ends, then shuts down gracefully: it stops taking
// work, lets runs in flight finish up to the shutdown timeout, and closes
// everything. It returns the first fatal error.
func (a *Agent) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4)

	brk, err := a.startBroker(ctx, cancel, &wg, errs)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: a.handler, ReadHeaderTimeout: 10 * time.Second}
	wg.Go(func() {
		if err := a.serveHTTP(srv); err != nil {
			errs <- fmt.Errorf("http: %w", err)
			cancel()
		}
	})

	listenCtx, stopListeners := context.WithCancel(context.Background())
	listenersDone := make(chan struct{})
	go func() {
		defer close(listenersDone)
		if err := a.listeners.Run(listenCtx); err != nil {
			a.log.Error("listeners stopped", "error", err)
		}
	}()
	a.applyListeners()

	a.startMaintenance(ctx, &wg)
	a.startSchedules(ctx, &wg)

	a.log.Info("opsrunner listening", "http", a.httpScheme()+"://"+a.httpLn.Addr().String(), "agent", a.cfg.AgentID, "workers", a.cfg.Workers, "data", a.cfg.DataDir)
	close(a.ready)
	<-ctx.Done()

	a.shutdown(srv, stopListeners, listenersDone)
	if brk != nil {
		brk.Close()
	}
	wg.Wait()
	a.shutdownState()
	close(errs)
	var first error
	for err := range errs {
		if first == nil {
			first = err
		}
	}
	return first
}

// startBroker starts the embedded broker, if this agent runs one, on a
// goroutine of wg; its failure is sent to errs and cancels Serve. The
// broker outlives the shutdown's first steps: listeners settle their
// deliveries in flight, and webhooks send, before it closes (the caller
// closes it), not as soon as ctx ends.
func (a *Agent) startBroker(ctx context.Context, cancel context.CancelFunc, wg *sync.WaitGroup, errs chan<- error) (*broker.Broker, error) {
	if a.brokerLn == nil {
		return nil, nil
	}
	brk, err := broker.New(a.embeddedBrokerConfig())
	if err != nil {
		a.brokerLn.Close()
		a.httpLn.Close()
		a.shutdownState()
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	a.metrics.broker.Store(brk)
	wsSrv, err := a.startBrokerWS(brk, cancel, wg, errs)
	if err == nil {
		if err = a.startBrokerTLS(ctx, brk, cancel, wg, errs); err != nil && wsSrv != nil {
			_ = wsSrv.Close()
		}
	}
	if err != nil {
		_ = brk.Close()
		a.brokerLn.Close()
		a.httpLn.Close()
		a.shutdownState()
		return nil, err
	}
	wg.Go(func() {
		// A broker closed by the shutdown before it served reports so:
		// that is no failure.
		if err := brk.Serve(context.WithoutCancel(ctx), a.brokerLn); err != nil && ctx.Err() == nil {
			errs <- fmt.Errorf("embedded broker: %w", err)
			cancel()
		}
		if wsSrv != nil { // the WebSocket listener stops with the broker
			_ = wsSrv.Close()
		}
	})
	a.log.Info("embedded broker listening", "addr", "stomp://"+a.brokerLn.Addr().String())
	return brk, nil
}

// startMaintenance starts the agent's own loops on goroutines of wg, until
// ctx ends: maintenance, the store's change notifications, and the
// cluster's job queue. It subscribes to store changes first, then catches
// up on what changed since New loaded the projects: a deploy to another
// agent right after this one starts must not wait for the periodic reload.
func (a *Agent) startMaintenance(ctx context.Context, wg *sync.WaitGroup) {
	var changes <-chan store.Change
	if w, ok := a.store.(store.Watcher); ok {
		changes = w.Watch(ctx)
		a.reloadAll(ctx)
	}
	wg.Go(func() { a.maintain(ctx) })
	wg.Go(func() { a.watch(ctx, changes) })
	if a.jobs != nil {
		wg.Go(func() { a.pullJobs(ctx) })
	}
}

// shutdown stops new requests and waits for webhooks in flight, then stops
// the listeners (their deliveries in flight settle) and the background
// runs, all within the shutdown timeout; past it background runs are
// cancelled.
func (a *Agent) shutdown(srv *http.Server, stopListeners context.CancelFunc, listenersDone <-chan struct{}) {
	a.log.Info("shutting down", "timeout", time.Duration(a.cfg.ShutdownTimeout).String())
	shutCtx, shutCancel := context.WithTimeout(context.Background(), time.Duration(a.cfg.ShutdownTimeout))
	defer shutCancel()
	_ = srv.Shutdown(shutCtx)
	stopListeners()
	select {
	case <-listenersDone:
	case <-shutCtx.Done():
	}
	bgDone := make(chan struct{})
	go func() { a.bg.Wait(); close(bgDone) }()
	select {
	case <-bgDone:
	case <-shutCtx.Done():
		a.bgCancel()
		<-bgDone
	}
	a.bgCancel()
}

func (a *Agent) shutdownState() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.store.Flush(ctx); err != nil {
		a.log.Warn("flush store", "error", err)
	}
	a.closeState()
}

// maintain runs the periodic chores (see tick, publishActive) every second
// until ctx ends.
func (a *Agent) maintain(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	lastSweep := time.Now()
	for {
		a.tick(ctx, &lastSweep)
		a.publishActive(ctx, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Project implements runtime.Projects over the live registry.
func (a *Agent) Project(name string) (*scripts.Project, bool) {
	p, ok := (*a.projects.Load())[name]
	return p, ok
}

// loadProjects installs the active version of every stored project.
func (a *Agent) loadProjects(ctx context.Context) error {
	infos, err := a.store.Projects(ctx)
	if err != nil {
		return fmt.Errorf("list projects: %w", err)
	}
	next := map[string]*scripts.Project{}
	for _, info := range infos {
		p, err := a.loadVersion(ctx, info.Name, info.ActiveVersion)
		if err != nil {
			a.log.Error("project does not load; skipped", "project", info.Name, "version", info.ActiveVersion, "error", err)
			continue
		}
		next[info.Name] = p
	}
	a.projects.Store(&next)
	return nil
}

func (a *Agent) loadVersion(ctx context.Context, name string, version int) (*scripts.Project, error) {
	pv, bundle, err := a.store.ProjectVersion(ctx, name, version)
	if err != nil {
		return nil, err
	}
	files, err := scripts.ReadBundle(bytes.NewReader(bundle), scripts.Limits{MaxBundleBytes: int64(len(bundle)) + 1})
	if err != nil {
		return nil, err
	}
	p, err := scripts.Load(name, pv.Version, files, a.loadOptions())
	if err != nil {
		return nil, err
	}
	p.CreatedAt = pv.CreatedAt
	return p, nil
}

func (a *Agent) install(p *scripts.Project) {
	cur := *a.projects.Load()
	next := make(map[string]*scripts.Project, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[p.Name] = p
	a.projects.Store(&next)
}
