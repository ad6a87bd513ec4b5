// Package runtime runs operation chains: it executes the compiled JavaScript
// of a project's operations in pooled, sandboxed goja runtimes, with the host
// API of docs/writing-operations.md, per-operation time limits (covering module
// evaluation, the handler, Promise jobs and the encoding of the result), a
// bounded call stack, a bound on any single allocation (guard.go) and a
// process-wide memory watchdog that interrupts the run that grew.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// Sentinel errors of a failed run. Result.Err wraps them; use errors.Is.
var (
	// ErrTimeout: an operation ran past its timeout, or the run's context ended.
	ErrTimeout = errors.New("operation timed out")
	// ErrMemoryLimit: the Go heap went above Config.MemoryLimit while the run was active.
	ErrMemoryLimit = errors.New("memory limit exceeded")
	// ErrStackOverflow: the script recursed deeper than Config.MaxCallStackSize.
	ErrStackOverflow = errors.New("maximum call stack size exceeded")
)

// Config configures an Engine. Every field is optional.
type Config struct {
	// Agent is this agent's id; kept for callers, not used by the engine.
	Agent string
	// Projects resolves RunOperation("project/name") across projects; nil
	// means only the invocation's own project is visible.
	Projects Projects
	// Dispatcher queues RunOperation(ref, false); nil makes such calls throw
	// "async runs are not available".
	Dispatcher Dispatcher
	// Sender sends SendMessage calls made outside a delivery; nil makes them
	// throw "no broker connection".
	Sender Sender
	// Workers bounds the runs executing JavaScript: a run takes a worker
	// to start and gives it back while it waits for a fetch or a timer;
	// nil means unbounded.
	Workers Workers
	// Fetcher makes the requests of fetch(); nil makes fetch reject with
	// "fetch is not available on this agent".
	Fetcher Fetcher
	// Secrets reads the `secrets` of scripts; nil: every name reads
	// undefined.
	Secrets Secrets
	// Confine, when set, is asked before each SendMessage of a script of
	// project (in a delivery or outside one) whether it may send to
	// destination; its error, which should name the destination and what
	// is allowed, is thrown to the script as a catchable Error and nothing
	// is sent. It is called on the script's goroutine, must be
	// goroutine-safe and should not block. nil allows every destination.
	Confine func(project, destination string) error
	// MaxCallStackSize bounds JS call depth; 0 means 512.
	MaxCallStackSize int
	// MemoryLimit is the Go heap size (bytes) above which running scripts are
	// interrupted with ErrMemoryLimit; 0 means 1 GiB.
	MemoryLimit uint64
	// MaxAllocBytes bounds what one script operation may allocate at once
	// (new ArrayBuffer(n), typed arrays, String.prototype.repeat, padStart,
	// padEnd, concat, Array.prototype.join, fill, Array.from,
	// JSON.stringify, the encoding of a result): a larger request throws a
	// catchable RangeError before anything is allocated, where it would
	// otherwise take the memory at once, beyond the watchdog's reach (see
	// guard.go). 0 means MemoryLimit/8.
	MaxAllocBytes uint64
	// Logger receives engine diagnostics (not script logs); nil discards.
	Logger *slog.Logger
	// Runtimes is how many idle runtimes the pool keeps; New builds that
	// many in the background (one at a time) so that the first runs do not
	// each pay for building one (~10 ms), and a runtime discarded after a
	// run (interrupted, polluted) is replaced in the background too. 0
	// means max(4, 2×GOMAXPROCS); size it to at least the number of
	// concurrent runs (workers).
	Runtimes int
	// MaxIdle is how many idle runtimes the pool may hold after a burst:
	// runs that wait (fetch, timers) each hold a runtime, so a burst of
	// them needs that many, and building one costs ~8 ms of CPU. Beyond
	// Runtimes, idle runtimes are dropped a few at a time while they stay
	// unused (trimPeriod). 0 means Runtimes; size it to the runs in
	// progress (max_inflight).
	MaxIdle int
	// NoPrewarm disables the background building; runtimes are then built
	// on first use.
	NoPrewarm bool
}

// Projects looks up deployed projects by name. Implementations must be safe
// for concurrent use; Project is called on the script's goroutine and should
// not block.
type Projects interface {
	Project(name string) (*scripts.Project, bool)
}

// Dispatcher queues an asynchronous run (RunOperation(ref, false)). It is
// called on the script's goroutine, must be goroutine-safe and should return
// quickly; it returns the id of the queued run.
type Dispatcher interface {
	Dispatch(ctx context.Context, inv Invocation) (runID string, err error)
}

// Sender sends a message to a broker destination outside any delivery. It is
// called on the script's goroutine and must be goroutine-safe.
type Sender interface {
	Send(ctx context.Context, destination string, body []byte, headers map[string]string) error
}

// Message is the delivery a chain handles, as scripts see it. Implemented by
// the listener code; methods may be called from the run's goroutine only,
// but implementations should be goroutine-safe and idempotent (a second
// Commit is a no-op).
type Message interface {
	// ID is the broker message id (what Acknowledge's messageId is compared with).
	ID() string
	Commit(ctx context.Context) error
	Rollback(ctx context.Context, cause error) error
	// Send joins the delivery's transaction.
	Send(ctx context.Context, destination string, body []byte, headers map[string]string) error
}

// Trigger values of Invocation.Trigger.
const (
	TriggerWebhook   = "webhook"
	TriggerListener  = "listener"
	TriggerOperation = "operation"
)

// Invocation asks the engine to run one operation chain.
type Invocation struct {
	RunID     string
	Project   *scripts.Project
	Operation string // operation name in Project
	Trigger   string // TriggerWebhook | TriggerListener | TriggerOperation
	// Event is plain Go data (map[string]any, []any, string, float64, bool,
	// nil, ...), deep-copied into the script's `event`; never modified. A
	// json.RawMessage (anywhere inside) becomes the value it encodes, parsed
	// straight into JS: cheaper than decoding it to a map first. A func()
	// any is called for its value. At the top level of an Event map, such
	// values and maps are built only when the script first reads them.
	Event any
	// Message is nil unless the chain handles a delivery.
	Message Message
	// Vars are the initial chain variables; may be nil. Never modified.
	Vars map[string]any
}

// Result is the outcome of Engine.Run.
type Result struct {
	// Status is store.StatusSucceeded, StatusFailed or StatusTimedOut, for the
	// triggered operation.
	Status string
	// JSON is the triggered operation's return value (a Promise resolved)
	// as JSON.stringify(value) writes it (but for one corner case, see
	// encodeJSON): compact, members in the object's key order (integer-like
	// keys ascending, then insertion order), only ", \ and control
	// characters escaped in strings, numbers as Number.prototype.toString
	// writes them. It is nil when JSON.stringify would give undefined
	// (undefined, a function, a symbol); JSON null is "null".
	JSON []byte
	// Err is nil on success; a *scripts.ScriptError (errors.As) for script
	// exceptions; wraps ErrTimeout, ErrMemoryLimit, ErrStackOverflow or the
	// context's error otherwise.
	Err error
	// Logs are the lines the chain logged (bounded; truncation is noted).
	Logs []store.LogLine
	// Steps lists each operation executed, in order of completion.
	Steps                 []store.Step
	StartedAt, FinishedAt time.Time

	// secrets are the secret values the run read, longest first (Redact).
	secrets []string
}

// Limits applied to every run.
const (
	maxLogLines     = 1000
	maxLogLineBytes = 8 << 10
	maxChainDepth   = 16
	maxSteps        = 1000
	defaultStack    = 512
	defaultMemLimit = 1 << 30
	filterTimeout   = scripts.DefaultOperationTimeout
)

// Engine runs operation chains. It is safe for concurrent use; each run takes
// a runtime from a pool and returns it (reset) when done. The zero value is
// not usable: call New.
type Engine struct {
	cfg  Config
	log  *slog.Logger
	pool chan *vm

	watch *watchdog

	warmStop chan struct{} // closed by Close
	warmDone chan struct{} // closed when the warming goroutine ends
	refill   chan struct{} // a runtime was discarded: build a replacement
	// lowIdle is the fewest idle runtimes seen since the last trim.
	lowIdle atomic.Int64
	// plans holds how runtimes are hardened (harden.go), recorded by the
	// first one built.
	plans hardenPlans

	closeOnce sync.Once
}

// New returns an Engine and starts its memory watchdog (idle until a run is
// active) and, unless cfg.NoPrewarm, the building of cfg.Runtimes pooled
// runtimes in the background; it does not block. Call Close to stop both.
func New(cfg Config) *Engine {
	boundRegexpMatches()
	if cfg.MaxCallStackSize <= 0 {
		cfg.MaxCallStackSize = defaultStack
	}
	if cfg.MemoryLimit == 0 {
		cfg.MemoryLimit = defaultMemLimit
	}
	if cfg.MaxAllocBytes == 0 {
		cfg.MaxAllocBytes = cfg.MemoryLimit / 8
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Runtimes <= 0 {
		cfg.Runtimes = max(4, 2*goruntime.GOMAXPROCS(0))
	}
	cfg.MaxIdle = max(cfg.MaxIdle, cfg.Runtimes)
	e := &Engine{
		cfg:      cfg,
		log:      lg,
		pool:     make(chan *vm, cfg.MaxIdle),
		warmStop: make(chan struct{}),
		warmDone: make(chan struct{}),
		refill:   make(chan struct{}, 1),
	}
	e.watch = newWatchdog(cfg.MemoryLimit, lg)
	if cfg.NoPrewarm {
		close(e.warmDone)
	} else {
		go e.prewarm(cfg.Runtimes)
	}
	return e
}

// trimPeriod is how often idle runtimes beyond Config.Runtimes are
// trimmed. Rebuilding the runtimes a burst of waiting runs needs costs
// ~10 ms of CPU each, paid when the load comes back (200 waiting runs: 2 s
// of CPU), while keeping them costs only memory: traffic that pauses for
// less than a minute or two finds them.
const trimPeriod = time.Minute

// trim drops half of the idle runtimes beyond Config.Runtimes that no run
// took since the last trim (lowIdle is the fewest idle seen meanwhile):
// under steady load the pool keeps what runs use.
func (e *Engine) trim() {
	excess := min(int(e.lowIdle.Load()), len(e.pool)) - e.cfg.Runtimes
	for n := (excess + 1) / 2; n > 0; n-- {
		select {
		case <-e.pool:
		default:
			n = 0
		}
	}
	e.lowIdle.Store(int64(len(e.pool)))
}

// prewarm fills the pool with n new runtimes, one at a time, then builds
// one more each time a discarded runtime is reported on e.refill, and
// trims the idle runtimes beyond Config.Runtimes every trimPeriod, until
// Close. It runs on a goroutine owned by the Engine.
func (e *Engine) prewarm(n int) {
	defer close(e.warmDone)
	tick := time.NewTicker(trimPeriod)
	defer tick.Stop()
	for {
		for ; n > 0; n-- {
			select {
			case <-e.warmStop:
				return
			default:
			}
			v, err := newVM(e)
			if err != nil {
				e.log.Warn("prewarm runtime", "error", err)
				break
			}
			select {
			case e.pool <- v:
			default: // runs have filled the pool already
			}
		}
		select {
		case <-e.warmStop:
			return
		case <-e.refill:
			n = 1
		case <-tick.C:
			e.trim()
		}
	}
}

// Close stops the memory watchdog and the pool's warming (waiting for a
// runtime being built, ~10 ms) and drops idle runtimes. It is idempotent;
// runs still active finish normally but are no longer watched: neither the
// memory limit nor the end of their context interrupts them, only their
// operations' timeouts.
func (e *Engine) Close() {
	e.closeOnce.Do(func() {
		close(e.warmStop)
		<-e.warmDone
		e.watch.close()
		for {
			select {
			case <-e.pool:
			default:
				return
			}
		}
	})
}

// getVM takes an idle runtime from the pool or makes a new one.
func (e *Engine) getVM() (*vm, error) {
	select {
	case v := <-e.pool:
		if n := int64(len(e.pool)); n < e.lowIdle.Load() {
			e.lowIdle.Store(n) // a race here only trims a little more or less
		}
		return v, nil
	default:
		return newVM(e)
	}
}

// putVM resets v and returns it to the pool, or drops it when it cannot be
// trusted (interrupted, panicked, globals it could not remove).
func (e *Engine) putVM(v *vm) {
	v.cur = nil
	if v.broken || !v.reset() {
		select {
		case e.refill <- struct{}{}: // replaced in the background (unless NoPrewarm)
		default:
		}
		return
	}
	select {
	case e.pool <- v:
	default:
	}
}

// Run runs the invocation's operation chain and returns its outcome. It
// blocks until the chain ends; ctx bounds the whole chain (a cancelled ctx
// interrupts the running script: Status timed_out). Goroutine-safe; never
// panics.
func (e *Engine) Run(ctx context.Context, inv Invocation) (res Result) {
	res.StartedAt = time.Now()
	defer func() {
		if res.Status == "" {
			res.Status = store.StatusFailed
		}
		res.FinishedAt = time.Now()
	}()
	if inv.Project == nil || inv.Project.Manifest == nil {
		res.Err = errors.New("run: no project")
		return res
	}
	op := findOperation(inv.Project, inv.Operation)
	if op == nil {
		res.Err = fmt.Errorf("run: project %q has no operation %q", inv.Project.Name, inv.Operation)
		return res
	}
	if err := e.acquire(ctx); err != nil {
		res.Status, res.Err = store.StatusTimedOut, fmt.Errorf("run: %w", err)
		return res
	}
	v, err := e.getVM()
	if err != nil {
		e.release()
		res.Err = fmt.Errorf("run: %w", err)
		return res
	}
	r := newRun(e, v, ctx, inv)
	r.holdsWorker = e.cfg.Workers != nil
	token := e.watch.track(r)
	defer func() {
		if x := recover(); x != nil {
			e.log.Error("panic in script run", "run", inv.RunID, "panic", x)
			v.broken = true
			res.Status, res.JSON = store.StatusFailed, nil
			res.Err = fmt.Errorf("internal error: %v", x)
		}
		killed := e.watch.untrack(token)
		if killed {
			v.broken = true
		}
		res.Logs, res.Steps = r.finishLogs(), r.steps
		r.redactResult(&res)
		if r.holdsWorker {
			e.release()
		}
		r.release()
		e.putVM(v)
		if killed {
			v, r, token = nil, nil, nil // the watchdog's next GC must find the runtime unreachable
			e.watch.released()
		}
	}()
	r.top(op, &res)
	return res
}

// Filter runs a listener filter script: it evaluates the script at path in
// p, calls its filter(event) (else its handle(event, ctx)) and returns the
// result's truthiness (a Promise is resolved first). An error means the
// script failed; the caller should treat it as a refusal. Blocks;
// goroutine-safe; never panics.
func (e *Engine) Filter(ctx context.Context, p *scripts.Project, path string, event any) (ok bool, err error) {
	if p == nil {
		return false, errors.New("filter: no project")
	}
	if err := e.acquire(ctx); err != nil {
		return false, fmt.Errorf("filter: %w", err)
	}
	v, err := e.getVM()
	if err != nil {
		e.release()
		return false, fmt.Errorf("filter: %w", err)
	}
	r := newRun(e, v, ctx, Invocation{Project: p, Operation: path, Trigger: TriggerListener, Event: event})
	r.holdsWorker = e.cfg.Workers != nil
	token := e.watch.track(r)
	defer func() {
		if x := recover(); x != nil {
			e.log.Error("panic in filter script", "script", path, "panic", x)
			v.broken = true
			ok, err = false, fmt.Errorf("filter %s: internal error: %v", path, x)
		}
		killed := e.watch.untrack(token)
		if killed {
			v.broken = true
		}
		if r.holdsWorker {
			e.release()
		}
		r.release()
		e.putVM(v)
		if killed {
			v, r, token = nil, nil, nil // as in Run
			e.watch.released()
		}
	}()
	ok, err = r.filter(path)
	if err != nil {
		if msg := r.redact(err.Error()); msg != err.Error() {
			err = &redactedError{msg: msg, err: err}
		}
	}
	return ok, err
}

// acquire takes a worker for a run starting (Config.Workers).
func (e *Engine) acquire(ctx context.Context) error {
	if e.cfg.Workers == nil {
		return nil
	}
	if err := e.cfg.Workers.Acquire(ctx); err != nil {
		return fmt.Errorf("waiting for a worker: %w", err)
	}
	return nil
}

// release gives back a run's worker.
func (e *Engine) release() {
	if e.cfg.Workers != nil {
		e.cfg.Workers.Release()
	}
}

func findOperation(p *scripts.Project, name string) *scripts.Operation {
	ops := p.Manifest.Operations
	for i := range ops {
		if ops[i].Name == name {
			return &ops[i]
		}
	}
	return nil
}
