package agent

import (
	"bytes"
	"context"
	"fmt"
	"net/http"

	"github.com/opsrunner/opsrunner/api"
	"github.com/opsrunner/opsrunner/broker"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// Deploy validates files as a new version of project (every script compiled
// first), stores it and makes it live. On any error the live version stays.
func (a *Agent) Deploy(ctx context.Context, project string, files map[string][]byte) (store.ProjectVersion, error) {
	a.deployMu.Lock()
	defer a.deployMu.Unlock()
	return a.deployLocked(ctx, project, files, "deploy")
}

func (a *Agent) deployLocked(ctx context.Context, project string, files map[string][]byte, note string) (store.ProjectVersion, error) {
	p, err := scripts.Load(project, 0, files, a.deployOptions(project))
	if err != nil {
		return store.ProjectVersion{}, err
	}
	var buf bytes.Buffer
	if err := scripts.WriteBundle(&buf, files); err != nil {
		return store.ProjectVersion{}, fmt.Errorf("bundle %s: %w", project, err)
	}
	v, err := a.store.SaveProjectVersion(ctx, project, buf.Bytes(), note)
	if err != nil {
		return store.ProjectVersion{}, fmt.Errorf("save %s: %w", project, err)
	}
	p.Version, p.CreatedAt = v.Version, v.CreatedAt
	a.install(p)
	a.applyListeners()
	a.log.Info("deployed", "project", project, "version", v.Version, "note", note)
	return v, nil
}

// ReplaceScript stores a new version of project whose operation's script is src.
func (a *Agent) ReplaceScript(ctx context.Context, project, operation string, src []byte) (store.ProjectVersion, error) {
	a.deployMu.Lock()
	defer a.deployMu.Unlock()
	p, ok := a.Project(project)
	if !ok {
		return store.ProjectVersion{}, &api.Error{Status: http.StatusNotFound, Code: api.CodeNotFound, Message: fmt.Sprintf("no project %q", project)}
	}
	op, ok := p.Operation(operation)
	if !ok {
		return store.ProjectVersion{}, &api.Error{Status: http.StatusNotFound, Code: api.CodeNotFound, Message: fmt.Sprintf("project %s has no operation %q", project, operation)}
	}
	if op.Type != "" && op.Type != scripts.TypeScript {
		return store.ProjectVersion{}, &api.Error{Status: http.StatusBadRequest, Code: api.CodeBadRequest, Message: fmt.Sprintf("operation %q is a built-in %s operation and has no script", operation, op.Type)}
	}
	files := make(map[string][]byte, len(p.Files))
	for k, v := range p.Files {
		files[k] = v
	}
	files[op.Script] = src
	return a.deployLocked(ctx, project, files, "script "+operation)
}

// Rollback makes version live again; the store records it as the active one.
func (a *Agent) Rollback(ctx context.Context, project string, version int) (store.ProjectVersion, error) {
	a.deployMu.Lock()
	defer a.deployMu.Unlock()
	p, err := a.loadVersion(ctx, project, version)
	if err != nil {
		return store.ProjectVersion{}, fmt.Errorf("rollback %s to version %d: %w", project, version, err)
	}
	if err := a.checkConfinedListeners(p); err != nil {
		return store.ProjectVersion{}, &api.Error{Status: http.StatusBadRequest, Code: api.CodeBadRequest,
			Message: fmt.Sprintf("rollback %s to version %d: %v", project, version, err)}
	}
	if err := a.store.SetActiveVersion(ctx, project, version); err != nil {
		return store.ProjectVersion{}, fmt.Errorf("rollback %s: %w", project, err)
	}
	a.install(p)
	a.applyListeners()
	pv, _, err := a.store.ProjectVersion(ctx, project, version)
	a.log.Info("rolled back", "project", project, "version", version)
	return pv, err
}

// Projects lists stored projects with their versions.
func (a *Agent) Projects(ctx context.Context) ([]store.ProjectInfo, error) {
	return a.store.Projects(ctx)
}

// Webhook resolves /hooks/{project}/{path} to the live operation.
func (a *Agent) Webhook(project, path string) (*scripts.Project, *scripts.Operation, error) {
	p, ok := a.Project(project)
	if !ok {
		return nil, nil, fmt.Errorf("no project %q: %w", project, store.ErrNotFound)
	}
	op, ok := p.WebhookOperation(path)
	if !ok {
		return nil, nil, fmt.Errorf("no webhook %q in %s: %w", path, project, store.ErrNotFound)
	}
	return p, op, nil
}

// loadOptions checks agent-dependent listener settings when a stored
// version is loaded.
func (a *Agent) loadOptions() scripts.LoadOptions {
	return scripts.LoadOptions{CheckListener: a.checkListener}
}

// deployOptions checks a new version of project: what loadOptions checks,
// and checks added since versions were stored, which must not stop those
// loading: selectors, and the destinations the agent confines project to.
func (a *Agent) deployOptions(project string) scripts.LoadOptions {
	return scripts.LoadOptions{CheckListener: func(l *scripts.Listener) error {
		if err := a.checkListener(l); err != nil {
			return err
		}
		if err := a.checkConfinedListener(project, l); err != nil {
			return err
		}
		return a.checkSelector(l)
	}}
}

func (a *Agent) checkListener(l *scripts.Listener) error {
	name := connectionOf(l)
	if _, ok := a.cfg.Connections[name]; !ok {
		return fmt.Errorf("unknown connection %q (this agent has: %s)", name, connectionNames(a.cfg))
	}
	if l.Selector != "" && !a.selectorSupported(name) {
		return fmt.Errorf("connection %q: its broker does not support selectors", name)
	}
	return nil
}

// connectionOf names the agent connection l listens on.
func connectionOf(l *scripts.Listener) string {
	if l.Connection == "" {
		return "default"
	}
	return l.Connection
}

// checkSelector refuses a selector the embedded broker would refuse on
// every SUBSCRIBE: its grammar is ours. Other brokers judge their own.
func (a *Agent) checkSelector(l *scripts.Listener) error {
	name := connectionOf(l)
	if l.Selector == "" || !a.embeddedBroker(name) {
		return nil
	}
	if err := broker.CheckSelector(l.Selector); err != nil {
		return fmt.Errorf("selector %q: %w", l.Selector, err)
	}
	return nil
}
