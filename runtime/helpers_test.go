package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dop251/goja"
	"github.com/opsrunner/opsrunner/scripts"
)

// op is a test shorthand for a script operation.
type op struct {
	name, src string
	timeout   time.Duration
	onSuccess []string
	onFailure []string
	ackAction string // non-empty: an acknowledge operation
}

// newProject compiles ops into a project named name, the way scripts.Load
// does: each script is wrapped with scripts.Wrap and compiled once.
func newProject(t testing.TB, name string, ops ...op) *scripts.Project {
	t.Helper()
	p := &scripts.Project{Name: name, Version: 1, Manifest: &scripts.Manifest{Project: name},
		Files: map[string][]byte{}, Programs: map[string]*goja.Program{}}
	for i, o := range ops {
		so := scripts.Operation{Name: o.name, Timeout: scripts.Duration(o.timeout), OnSuccess: o.onSuccess, OnFailure: o.onFailure}
		if o.ackAction != "" {
			so.Type, so.Action = scripts.TypeAcknowledge, o.ackAction
		} else {
			so.Type = scripts.TypeScript
			so.Script = fmt.Sprintf("operations/op%d.js", i)
			prog, err := goja.Compile(so.Script, scripts.Wrap(o.src), false)
			if err != nil {
				t.Fatalf("compile %s: %v", o.name, err)
			}
			p.Programs[so.Script] = prog
			p.Files[so.Script] = []byte(o.src)
		}
		p.Manifest.Operations = append(p.Manifest.Operations, so)
	}
	return p
}

// fakeMessage records settlements and sends (our own interface, not a broker mock).
type fakeMessage struct {
	id string
	mu sync.Mutex
	// events like "commit", "rollback: cause", "send /queue/x body"
	events  []string
	headers []map[string]string
}

func (m *fakeMessage) ID() string { return m.id }
func (m *fakeMessage) Commit(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, "commit")
	return nil
}
func (m *fakeMessage) Rollback(_ context.Context, cause error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, "rollback: "+cause.Error())
	return nil
}
func (m *fakeMessage) Send(_ context.Context, dest string, body []byte, h map[string]string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, "send "+dest+" "+string(body))
	m.headers = append(m.headers, h)
	return nil
}
func (m *fakeMessage) log() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.events...)
}

type sent struct {
	dest    string
	body    string
	headers map[string]string
}

type fakeSender struct {
	mu   sync.Mutex
	sent []sent
}

func (s *fakeSender) Send(_ context.Context, dest string, body []byte, h map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, sent{dest, string(body), h})
	return nil
}

type fakeDispatcher struct {
	mu   sync.Mutex
	invs []Invocation
}

func (d *fakeDispatcher) Dispatch(_ context.Context, inv Invocation) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.invs = append(d.invs, inv)
	return fmt.Sprintf("run-%d", len(d.invs)), nil
}

type projectSet map[string]*scripts.Project

func (s projectSet) Project(name string) (*scripts.Project, bool) { p, ok := s[name]; return p, ok }

func newEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	e := New(cfg)
	t.Cleanup(e.Close)
	return e
}

// runOne runs the first operation of a one-off project built from src.
func runOne(t testing.TB, e *Engine, src string, event any) Result {
	t.Helper()
	p := newProject(t, "p", op{name: "main", src: src})
	return e.Run(context.Background(), Invocation{RunID: "r1", Project: p, Operation: "main", Trigger: TriggerWebhook, Event: event})
}

func scriptErr(t testing.TB, err error) *scripts.ScriptError {
	t.Helper()
	var se *scripts.ScriptError
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not a ScriptError", err, err)
	}
	return se
}

// value decodes r.JSON for comparisons with plain Go data: nil when there
// is no JSON, and for invalid JSON a string saying so (which no test wants).
func (r Result) value() any {
	if r.JSON == nil {
		return nil
	}
	var v any
	if err := json.Unmarshal(r.JSON, &v); err != nil {
		return fmt.Sprintf("invalid result JSON %q: %v", r.JSON, err)
	}
	return v
}
