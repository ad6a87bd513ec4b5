package runtime

import (
	"log/slog"
	goruntime "runtime"
	"runtime/metrics"
	"sync"
	"time"
)

const (
	heapMetric     = "/memory/classes/heap/objects:bytes"
	watchdogPeriod = 10 * time.Millisecond
)

// watchdog looks at the active runs every watchdogPeriod while at least one
// is active. It interrupts the runs whose context has ended (see
// run.contextEnded), and interrupts runs with ErrMemoryLimit when the Go
// heap is above the limit.
//
// Victim choice: goja cannot say which runtime allocated what, so when the
// heap is over the limit the watchdog first forces a GC (the metric counts
// unswept garbage) and, if still over, interrupts the OLDEST active run: a
// runaway allocation needs time to grow the heap, while ordinary runs are
// short. It then waits until that run has ended (its runtime is discarded,
// never pooled, so its garbage becomes collectable) before judging again, so
// innocent runs are only interrupted if the heap stays over the limit once
// the first victim is gone.
//
// The goroutine is owned by the Engine and stopped by close.
type watchdog struct {
	limit uint64
	log   *slog.Logger

	mu     sync.Mutex
	active map[*tracked]struct{}
	seq    uint64

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
// runtime must then be discarded). After untrack the watchdog never touches
// the run's runtime again.
func (w *watchdog) untrack(t *tracked) (killed bool) {
	w.mu.Lock()
	delete(w.active, t)
	killed = t.killed
	w.mu.Unlock()
	return killed
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
			w.killOldest(h)
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

// unwinding reports whether a run interrupted by the watchdog is still active.
func (w *watchdog) unwinding() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for t := range w.active {
		if t.killed {
			return true
		}
	}
	return false
}

func (w *watchdog) killOldest(heap uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var victim *tracked
	for t := range w.active {
		if !t.killed && (victim == nil || t.seq < victim.seq) {
			victim = t
		}
	}
	if victim == nil {
		return
	}
	victim.killed = true
	victim.r.killMemory()
	w.log.Warn("script run interrupted: memory limit", "run", victim.r.inv.RunID, "heapBytes", heap, "limitBytes", w.limit)
}
