package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/opsrunner/opsrunner/api"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// DeleteProject deletes every version of project and takes it off this
// agent: its webhooks answer 404 and its listeners stop (deliveries in
// flight settle as usual). Other agents do the same on the store's change
// notification. Runs, dead letters, secrets and listener states are kept.
func (a *Agent) DeleteProject(ctx context.Context, project string) error {
	a.deployMu.Lock()
	defer a.deployMu.Unlock()
	if err := a.store.DeleteProject(ctx, project); err != nil {
		return fmt.Errorf("delete project %s: %w", project, err)
	}
	a.uninstallLocked(project)
	a.log.Info("deleted", "project", project)
	return nil
}

// uninstall takes project off this agent when the store no longer has it
// (deleted by another agent). It does nothing for a project not installed,
// and asks the store again under deployMu: a listing read before a deploy
// on this agent must not take the new project off.
func (a *Agent) uninstall(ctx context.Context, project string) {
	if _, ok := a.Project(project); !ok {
		return
	}
	a.deployMu.Lock()
	defer a.deployMu.Unlock()
	if _, _, err := a.store.ProjectVersion(ctx, project, 0); !errors.Is(err, store.ErrNotFound) {
		return // still stored, or the store cannot say: keep it
	}
	a.uninstallLocked(project)
	a.log.Info("removed", "project", project)
}

// uninstallMissing takes off this agent every installed project that infos
// (the store's projects) does not hold: deletions whose notification was
// missed.
func (a *Agent) uninstallMissing(ctx context.Context, infos []store.ProjectInfo) {
	stored := make(map[string]bool, len(infos))
	for _, info := range infos {
		stored[info.Name] = true
	}
	for name := range *a.projects.Load() {
		if !stored[name] {
			a.uninstall(ctx, name)
		}
	}
}

// uninstallLocked removes project from the live registry and applies the
// listeners of what is left. The caller holds deployMu.
func (a *Agent) uninstallLocked(project string) {
	cur := *a.projects.Load()
	if _, ok := cur[project]; !ok {
		return
	}
	next := make(map[string]*scripts.Project, len(cur))
	for k, v := range cur {
		if k != project {
			next[k] = v
		}
	}
	a.projects.Store(&next)
	a.applyListeners()
}

// DeleteDeadLetter deletes a stored dead letter without replaying it; an
// error wrapping store.ErrNotFound when there is none (the store's delete
// does not say).
func (a *Agent) DeleteDeadLetter(ctx context.Context, id string) error {
	if _, err := a.store.DeadLetter(ctx, id); err != nil {
		return fmt.Errorf("delete dead letter %s: %w", id, err)
	}
	if err := a.store.DeleteDeadLetter(ctx, id); err != nil {
		return fmt.Errorf("delete dead letter %s: %w", id, err)
	}
	return nil
}

// Info describes this agent and where its "default" broker connection
// points, without credentials.
func (a *Agent) Info(context.Context) (api.Info, error) {
	in := api.Info{Version: Version, Agent: a.cfg.AgentID, EmbeddedBroker: a.brokerLn != nil}
	if a.brokerWSLn != nil {
		in.BrokerWSAddr = a.brokerWSLn.Addr().String()
	}
	if in.EmbeddedBroker {
		in.BrokerAddr = a.brokerLn.Addr().String()
		in.BrokerURL = "stomp://" + in.BrokerAddr
		return in, nil
	}
	c, ok := a.cfg.Connections["default"]
	if !ok {
		return in, nil
	}
	u, err := ParseBrokerURL(c.URL)
	if err != nil {
		return in, fmt.Errorf("default connection: %w", err)
	}
	scheme := "stomp"
	if u.TLS || c.TLS {
		scheme = "stomp+ssl"
	}
	in.BrokerAddr = u.Addr
	in.BrokerURL = scheme + "://" + u.Addr
	return in, nil
}
