package runtime

import (
	"log/slog"
	goruntime "runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"time"
	"weak"

	"github.com/dop251/goja"
)

const (
	heapMetric     = "/memory/classes/heap/objects:bytes"
	watchdogPeriod = 10 * time.Millisecond
	// maxDyingTicks is how many periods the watchdog waits for a victim's
	// runtime to become unreachable before it judges again all the same
	// (and says so in the log).
	maxDyingTicks = 100
)

// watchdog looks at the active runs every watchdogPeriod while at least one
// is active. It interrupts the runs whose context has ended (see
// run.contextEnded), and interrupts runs with ErrMemoryLimit when the Go
// heap is above the limit.
//
// Victim choice: goja cannot say which runtime allocated what, so when the
// heap is over the limit the watchdog first forces a GC (the metric counts
// unswept garbage) and, if still over, interrupts the run that grew most:
// the one whose large allocations, counted by the allocation guards
// (run.allocated, see guard.go), add up to the most bytes; among runs with
// equal counts (growth the guards cannot see, such as s += s), the OLDEST:
// a runaway allocation needs time to grow the heap, while ordinary runs
// are short. It then waits until that run has ended and its runtime has
// been dropped (discarded, never pooled: see released), so that a forced
// GC can collect its garbage, before judging again; innocent runs are only
// interrupted if the heap stays over the limit once the first victim is
// gone.
//
// The goroutine is owned by the Engine and stopped by close.
type watchdog struct {
	limit uint64
	log   *slog.Logger

	mu     sync.Mutex
	active map[*tracked]struct{}
	seq    uint64
	// victims counts the runs interrupted for memory whose runtime has not
	// been dropped yet (see released).
	victims int
	// dying are the runtimes of the runs interrupted for memory, until a
	// forced GC finds them unreachable; dyingTicks counts the periods spent
	// waiting for that.
	dying      []weak.Pointer[goja.Runtime]
	dyingTicks int

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

// tracked is one active run as the watchdog sees it; guarded by watchdog.mu.
type tracked struct {
	r        *run
	seq      uint64
	killed   bool
	ctxEnded bool // the run has been told its context ended
}

func newWatchdog(limit uint64, lg *slog.Logger) *watchdog {
	w := &watchdog{
		limit:  limit,
		log:    lg,
		active: make(map[*tracked]struct{}),
		wake:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go w.loop()
	return w
}

// track registers an active run; untrack must follow. The record is the
// run's own (run.watched): tracking allocates nothing.
func (w *watchdog) track(r *run) *tracked {
	w.mu.Lock()
	w.seq++
	t := &r.watched
	*t = tracked{r: r, seq: w.seq}
	w.active[t] = struct{}{}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return t
}

// untrack removes a run and reports whether the watchdog interrupted it (its
// runtime must then be discarded, and released called once it has been).
// After untrack the watchdog never touches the run's runtime again.
func (w *watchdog) untrack(t *tracked) (killed bool) {
	w.mu.Lock()
	delete(w.active, t)
	killed = t.killed
	w.mu.Unlock()
	return killed
}

// released says that the runtime of a run interrupted for memory (untrack
// reported it killed) has been dropped: nothing of the engine refers to it
// any more, and the next forced GC collects what it grew.
func (w *watchdog) released() {
	w.mu.Lock()
	w.victims--
	w.mu.Unlock()
}

func (w *watchdog) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

func (w *watchdog) idle() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.active) == 0
}

func (w *watchdog) loop() {
	defer close(w.done)
	sample := []metrics.Sample{{Name: heapMetric}}
	heap := func() uint64 {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return sample[0].Value.Uint64()
	}
	for {
		if w.idle() {
			select {
			case <-w.stop:
				return
			case <-w.wake:
				continue
			}
		}
		t := time.NewTimer(watchdogPeriod)
		select {
		case <-w.stop:
			t.Stop()
			return
		case <-t.C:
		}
		w.endContexts()
		if heap() < w.limit || w.unwinding() {
			continue
		}
		goruntime.GC()
		if h := heap(); h >= w.limit {
			w.killLargest(h)
		}
	}
}

// endContexts tells each active run whose context has ended, once.
func (w *watchdog) endContexts() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for t := range w.active {
		if !t.ctxEnded && t.r.ctx.Err() != nil {
			t.ctxEnded = t.r.contextEnded()
		}
	}
}

// unwinding reports whether a run interrupted by the watchdog has not yet
// ended and dropped its runtime, or whether that runtime is still
// reachable after a forced GC: until then the heap still holds what the
// victim grew, and judging it would interrupt an innocent run.
//
// The forced GC runs without w.mu, which every run's start and end takes.
// Only the watchdog's goroutine changes dying and dyingTicks.
func (w *watchdog) unwinding() bool {
	w.mu.Lock()
	victims, dying := w.victims, len(w.dying)
	w.mu.Unlock()
	if victims > 0 {
		return true
	}
	if dying == 0 {
		return false
	}
	goruntime.GC()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.dying = slices.DeleteFunc(w.dying, func(p weak.Pointer[goja.Runtime]) bool { return p.Value() == nil })
	if len(w.dying) == 0 {
		w.dyingTicks = 0
		return false
	}
	if w.dyingTicks++; w.dyingTicks > maxDyingTicks {
		w.log.Warn("memory watchdog: an interrupted runtime is still reachable; judging again", "runtimes", len(w.dying))
		w.dying, w.dyingTicks = nil, 0
		return false
	}
	return true
}

// killLargest interrupts the active run that grew most (see watchdog).
func (w *watchdog) killLargest(heap uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var victim *tracked
	var most uint64
	for t := range w.active {
		if t.killed {
			continue
		}
		n := t.r.allocated.Load()
		if victim == nil || n > most || (n == most && t.seq < victim.seq) {
			victim, most = t, n
		}
	}
	if victim == nil {
		return
	}
	victim.killed = true
	w.victims++
	w.dying = append(w.dying, weak.Make(victim.r.v.rt))
	victim.r.killMemory()
	w.log.Warn("script run interrupted: memory limit", "run", victim.r.inv.RunID, "grewBytes", most,
		"heapBytes", heap, "limitBytes", w.limit)
}
