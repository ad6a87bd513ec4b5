package store

import (
	"context"
	"sync"
)

// Change kinds carried by Change.Kind.
const (
	// ChangeProject: a project was deployed or its active version changed;
	// Key is the project name.
	ChangeProject = "project"
	// ChangeState: a listener or binding state was set; Key is the state key.
	ChangeState = "state"
)

// Change tells agents that shared configuration changed and must be reloaded.
type Change struct {
	Kind string `json:"kind"` // ChangeProject or ChangeState
	Key  string `json:"key"`
}

// Watcher is implemented by stores that announce changes, so that every agent
// reloads on a deploy or a toggle made anywhere.
type Watcher interface {
	// Watch returns a channel of changes made after Watch returns. The channel
	// is closed when ctx ends or the store is closed. It does not block.
	// Changes may be dropped for a watcher that does not keep up (its buffer
	// holds watchBuffer changes); a watcher should treat a change as "reload".
	Watch(ctx context.Context) <-chan Change
}

const watchBuffer = 256

// hub fans in-process changes out to watchers. The zero value is ready.
type hub struct {
	mu     sync.Mutex
	subs   map[chan Change]struct{}
	closed bool
}

// subscribe registers a watcher until ctx ends or close is called.
func (h *hub) subscribe(ctx context.Context) <-chan Change {
	ch := make(chan Change, watchBuffer)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(ch)
		return ch
	}
	if h.subs == nil {
		h.subs = make(map[chan Change]struct{})
	}
	h.subs[ch] = struct{}{}
	context.AfterFunc(ctx, func() { h.unsubscribe(ch) })
	return ch
}

func (h *hub) unsubscribe(ch chan Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[ch]; ok {
		delete(h.subs, ch)
		close(ch)
	}
}

// publish delivers c to every watcher without blocking.
func (h *hub) publish(c Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- c:
		default: // slow watcher: drop rather than block a writer
		}
	}
}

// close ends every watch. Idempotent.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for ch := range h.subs {
		delete(h.subs, ch)
		close(ch)
	}
}
