package agent

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/opsrunner/opsrunner/api"
	"github.com/opsrunner/opsrunner/broker"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
	"github.com/opsrunner/opsrunner/triggers"
)

// Listener and binding state keys in the store.
func listenerKey(id string) string           { return "listener:" + id }
func bindingKey(id, op string) string        { return "binding:" + id + ":" + op }
func listenerID(project, name string) string { return project + "/" + name }

// stateCache keeps listener and binding states read from the store, so that
// a delivery does not read the store; it is dropped whenever a state changes
// (here, or on another agent: the store's change notifications).
type stateCache struct {
	mu sync.Mutex
	m  map[stateKey]cachedState
}

type cachedState struct{ on, ok bool }

// stateKey names a cached state: a store key (op ""), or a binding's
// listener id and operation, whose store key (bindingKey) is built only
// when the cache misses: a delivery reads its bindings' states.
type stateKey struct{ key, op string }

func (k stateKey) storeKey() string {
	if k.op == "" {
		return k.key
	}
	return bindingKey(k.key, k.op)
}

// get reads the state of a store key.
func (c *stateCache) get(ctx context.Context, st store.Store, key string) (bool, bool, error) {
	return c.lookup(ctx, st, stateKey{key: key})
}

// binding reads the state of listener id's binding to op.
func (c *stateCache) binding(ctx context.Context, st store.Store, id, op string) (bool, bool, error) {
	return c.lookup(ctx, st, stateKey{key: id, op: op})
}

func (c *stateCache) lookup(ctx context.Context, st store.Store, k stateKey) (bool, bool, error) {
	c.mu.Lock()
	v, hit := c.m[k]
	c.mu.Unlock()
	if hit {
		return v.on, v.ok, nil
	}
	on, ok, err := st.State(ctx, k.storeKey())
	if err != nil {
		return false, false, err
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[stateKey]cachedState{}
	}
	c.m[k] = cachedState{on, ok}
	c.mu.Unlock()
	return on, ok, nil
}

// reset forgets every cached state.
func (c *stateCache) reset() {
	c.mu.Lock()
	c.m = nil
	c.mu.Unlock()
}

// listenerEnabled reads a listener's state; a listener never toggled takes
// the manifest's `enabled` (default true).
func (a *Agent) listenerEnabled(ctx context.Context, id string, l *scripts.Listener) bool {
	on, ok, err := a.states.get(ctx, a.store, listenerKey(id))
	if err != nil {
		a.log.Warn("read listener state", "listener", id, "error", err)
	}
	if ok {
		return on
	}
	return l.Enabled == nil || *l.Enabled
}

func (a *Agent) bindingEnabled(ctx context.Context, id, op string) bool {
	on, ok, err := a.states.binding(ctx, a.store, id, op)
	if err != nil {
		a.log.Warn("read binding state", "listener", id, "operation", op, "error", err)
	}
	return !ok || on
}

// specs lists every listener of the live projects with its state.
func (a *Agent) specs(ctx context.Context) []listenerEntry {
	var out []listenerEntry
	for _, p := range *a.projects.Load() {
		for i := range p.Manifest.Listeners {
			l := p.Manifest.Listeners[i]
			id := listenerID(p.Name, l.Name)
			out = append(out, listenerEntry{
				spec:    triggers.ListenerSpec{ID: id, Project: p.Name, Version: p.Version, Listener: l},
				enabled: a.listenerEnabled(ctx, id, &l),
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].spec.ID < out[j].spec.ID })
	return out
}

type listenerEntry struct {
	spec    triggers.ListenerSpec
	enabled bool
}

// applyListeners hands the enabled listeners to the manager.
func (a *Agent) applyListeners() {
	ctx := context.Background()
	var enabled []triggers.ListenerSpec
	for _, e := range a.specs(ctx) {
		if e.enabled && a.placed(&e.spec.Listener) && a.anyBindingEnabled(ctx, e.spec) && a.listenerConfined(e.spec) {
			enabled = append(enabled, e.spec)
		}
	}
	a.listeners.Apply(enabled)
}

// anyBindingEnabled: a listener whose operations are all off takes no
// messages (they wait on the broker instead of being rolled back).
func (a *Agent) anyBindingEnabled(ctx context.Context, spec triggers.ListenerSpec) bool {
	for _, op := range spec.Listener.Operations {
		if a.bindingEnabled(ctx, spec.ID, op) {
			return true
		}
	}
	return false
}

// Listeners lists listeners with their bindings and states; q filters by
// activity, operation or status, case-insensitively.
func (a *Agent) Listeners(ctx context.Context, q string) ([]api.ListenerView, error) {
	status := map[string]string{}
	for _, s := range a.listeners.Status() {
		status[s.ID] = s.State
	}
	q = strings.ToLower(strings.TrimSpace(q))
	counts := a.brokerCounts()
	var out []api.ListenerView
	for _, e := range a.specs(ctx) {
		l := e.spec.Listener
		v := api.ListenerView{
			ID: e.spec.ID, Name: l.Name, Project: e.spec.Project, Destination: l.Destination,
			Connection: l.Connection, AckMode: l.AckMode, Enabled: e.enabled,
			Status: "off",
		}
		if e.enabled {
			v.Status = "on"
			if !a.anyBindingEnabled(ctx, e.spec) {
				v.Status = "on (no operation enabled)"
			} else if !a.placed(&e.spec.Listener) {
				v.Status = "on (placed on another agent)"
			} else if a.checkConfinedListener(e.spec.Project, &l) != nil {
				v.Status = "on (outside the project's destinations)"
			} else if s, ok := status[e.spec.ID]; ok && s != "listening" {
				v.Status = "on (" + s + ")"
			}
		}
		for _, op := range l.Operations {
			v.Operations = append(v.Operations, api.BindingView{Name: op, Enabled: e.enabled && a.bindingEnabled(ctx, e.spec.ID, op)})
		}
		if counts != nil && a.ownBroker(&l) {
			s := counts[l.Destination] // none yet: the broker holds nothing for it
			v.Backlog, v.InFlight, v.Consumers = &s.Pending, &s.InFlight, &s.Consumers
		}
		if q == "" || matches(v, q) {
			out = append(out, v)
		}
	}
	return out, nil
}

// brokerCounts returns the embedded broker's destinations by name; nil
// when this agent runs no embedded broker (or it has not started).
func (a *Agent) brokerCounts() map[string]broker.DestinationStats {
	b := a.metrics.broker.Load()
	if b == nil {
		return nil
	}
	all := b.Destinations()
	out := make(map[string]broker.DestinationStats, len(all))
	for _, s := range all {
		out[s.Destination] = s
	}
	return out
}

// ownBroker reports whether l listens on this agent's embedded broker,
// whose counts the agent reads: the default connection when it runs one.
func (a *Agent) ownBroker(l *scripts.Listener) bool {
	return connectionOf(l) == "default" && a.cfg.EmbeddedBroker()
}

func matches(v api.ListenerView, q string) bool {
	fields := []string{v.ID, v.Name, v.Destination, v.Status, v.Connection}
	for _, b := range v.Operations {
		fields = append(fields, b.Name)
	}
	for _, f := range fields {
		if strings.Contains(strings.ToLower(f), q) {
			return true
		}
	}
	return false
}

func (a *Agent) findListener(id string) (*scripts.Listener, error) {
	project, name, _ := strings.Cut(id, "/")
	if p, ok := a.Project(project); ok {
		if l, ok := p.Listener(name); ok {
			return l, nil
		}
	}
	return nil, &api.Error{Status: http.StatusNotFound, Code: api.CodeNotFound, Message: fmt.Sprintf("no listener %q (ids are project/listener)", id)}
}

// SetListenerState turns a listener on or off. Turning it off turns off its
// bindings; turning it on leaves them as they are (the seed's rule).
func (a *Agent) SetListenerState(ctx context.Context, id string, enabled bool) error {
	a.deployMu.Lock()
	defer a.deployMu.Unlock()
	l, err := a.findListener(id)
	if err != nil {
		return err
	}
	if !enabled {
		for _, op := range l.Operations {
			if err := a.store.SetState(ctx, bindingKey(id, op), false); err != nil {
				a.states.reset()
				return fmt.Errorf("disable binding %s: %w", op, err)
			}
		}
	}
	if err := a.store.SetState(ctx, listenerKey(id), enabled); err != nil {
		return fmt.Errorf("set listener state: %w", err)
	}
	a.states.reset()
	a.applyListeners()
	return nil
}

// SetBindingState turns one listener → operation binding on or off.
func (a *Agent) SetBindingState(ctx context.Context, id, operation string, enabled bool) error {
	a.deployMu.Lock()
	defer a.deployMu.Unlock()
	l, err := a.findListener(id)
	if err != nil {
		return err
	}
	found := false
	for _, op := range l.Operations {
		found = found || op == operation
	}
	if !found {
		return &api.Error{Status: http.StatusNotFound, Code: api.CodeNotFound, Message: fmt.Sprintf("listener %s is not bound to operation %q", id, operation)}
	}
	if err := a.store.SetState(ctx, bindingKey(id, operation), enabled); err != nil {
		return fmt.Errorf("set binding state: %w", err)
	}
	a.states.reset()
	a.applyListeners()
	return nil
}
