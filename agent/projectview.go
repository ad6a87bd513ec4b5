package agent

import (
	"net/url"

	"github.com/opsrunner/opsrunner/api"
	"github.com/opsrunner/opsrunner/scripts"
)

var _ api.OperationsReader = (*Agent)(nil)

// ProjectOperations lists the operations of the version of project this
// agent has loaded (the live one), in manifest order, each with its
// webhook, the listeners feeding it, the schedules running it (ids
// project/schedule, nil when none) and its time limit; ok is false when no
// version of project is loaded (api.OperationsReader).
func (a *Agent) ProjectOperations(project string) ([]api.OperationView, bool) {
	p, ok := a.Project(project)
	if !ok || p.Manifest == nil {
		return nil, false
	}
	feeds := map[string][]string{} // operation → listener ids, in manifest order
	for _, l := range p.Manifest.Listeners {
		for _, op := range l.Operations {
			feeds[op] = append(feeds[op], listenerID(p.Name, l.Name))
		}
	}
	ticks := map[string][]string{} // operation → schedule ids, in manifest order
	for _, s := range p.Manifest.Schedules {
		for _, op := range s.Operations {
			ticks[op] = append(ticks[op], listenerID(p.Name, s.Name)) // a schedule names an operation once
		}
	}
	out := make([]api.OperationView, 0, len(p.Manifest.Operations))
	for i := range p.Manifest.Operations {
		o := &p.Manifest.Operations[i]
		v := api.OperationView{Name: o.Name, Type: o.Type, Listeners: feeds[o.Name], Schedules: ticks[o.Name]}
		if limit := opLimit(o); limit > 0 { // an acknowledgement has none
			v.Timeout = scripts.Duration(limit).String()
		}
		if v.Listeners == nil {
			v.Listeners = []string{}
		}
		if o.Webhook != nil {
			path := o.WebhookPath() // already escaped: the manifest's path, or the name escaped
			v.Webhook = &api.WebhookView{Path: path, URL: "/hooks/" + url.PathEscape(p.Name) + "/" + path}
		}
		out = append(out, v)
	}
	return out, true
}
