package agent

import (
	"fmt"
	"strings"

	"github.com/opsrunner/opsrunner/destpattern"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/triggers"
)

// confinement returns the destination patterns project is confined to;
// nil when it is not confined.
func (a *Agent) confinement(project string) []string {
	return a.cfg.Projects[project].Destinations
}

// confine is the engine's runtime.Config.Confine: nil when a script of
// project may send to dest, else an error naming both and what is allowed.
func (a *Agent) confine(project, dest string) error {
	allowed := a.confinement(project)
	if len(allowed) == 0 || destpattern.MatchAny(allowed, dest) {
		return nil
	}
	return fmt.Errorf("project %q may not send to %q: its destinations are confined to %s (agent configuration projects.%s.destinations)",
		project, dest, strings.Join(allowed, ", "), project)
}

// checkConfinedListener refuses a listener of project whose destination
// is outside the project's confinement.
func (a *Agent) checkConfinedListener(project string, l *scripts.Listener) error {
	allowed := a.confinement(project)
	if len(allowed) == 0 || destpattern.MatchAny(allowed, l.Destination) {
		return nil
	}
	return fmt.Errorf("destination %q is outside the destinations project %q is confined to: %s (agent configuration projects.%s.destinations)",
		l.Destination, project, strings.Join(allowed, ", "), project)
}

// checkConfinedListeners refuses a project version with a listener
// outside the project's confinement (a rollback to a version deployed
// before the confinement was set).
func (a *Agent) checkConfinedListeners(p *scripts.Project) error {
	for i := range p.Manifest.Listeners {
		l := &p.Manifest.Listeners[i]
		if err := a.checkConfinedListener(p.Name, l); err != nil {
			return fmt.Errorf("listener %q: %w", l.Name, err)
		}
	}
	return nil
}

// listenerConfined reports whether spec's destination is inside its
// project's confinement. A version stored before the agent's configuration
// confined the project loads all the same, but a listener outside the
// confinement is not started: that is logged as an error each time the
// listeners are applied.
func (a *Agent) listenerConfined(spec triggers.ListenerSpec) bool {
	err := a.checkConfinedListener(spec.Project, &spec.Listener)
	if err != nil {
		a.log.Error("listener not started", "listener", spec.ID, "version", spec.Version, "error", err)
	}
	return err == nil
}
