package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/opsrunner/opsrunner/api"
	"github.com/opsrunner/opsrunner/cluster"
	"github.com/opsrunner/opsrunner/store"
	"github.com/opsrunner/opsrunner/triggers"
)

// Members reports cluster membership, leader and quorum as this agent last
// saw them (refreshed every second).
func (a *Agent) Members(ctx context.Context) (api.MembersView, error) {
	members, leader, err := a.view.get()
	view := api.MembersView{Leader: leader, Time: time.Now().UTC(), Quorum: a.quorum(len(members))}
	if err != nil {
		view.Redis = "unreachable: " + err.Error()
		view.LeaderNodeState = "UNKNOWN"
		view.Quorum = a.quorum(0)
		return view, nil
	}
	view.Members = append([]cluster.Member{}, members...)
	self := a.active.counts(time.Now(), a.stuckGrace())
	for i := range view.Members {
		m := &view.Members[i]
		m.Leader = m.ID == leader
		if m.ID == a.cfg.AgentID { // fresher than its last heartbeat
			m.Running, m.StuckRuns = self.running, self.stuck
		}
	}
	view.LeaderNodeState = "ACTIVE"
	if leader == "" {
		view.LeaderNodeState = "ELECTING"
	}
	if a.cfg.RedisURL != "" {
		view.Redis = "ok"
	}
	return view, nil
}

func (a *Agent) quorum(live int) api.Quorum {
	size := a.cfg.ClusterSize
	required := size/2 + 1
	return api.Quorum{Size: size, Required: required, Live: live, OK: live >= required}
}

// Ready is nil when the agent takes work: it has started, its coordinator
// answers, the cluster has quorum, and a worker has been free within the
// longest time limit plus the stuck grace (workersStalled).
func (a *Agent) Ready(ctx context.Context) error {
	select {
	case <-a.ready:
	default:
		return errors.New("starting")
	}
	members, _, err := a.view.get()
	if err != nil {
		return fmt.Errorf("coordinator unreachable: %w", err)
	}
	if q := a.quorum(len(members)); !q.OK {
		return fmt.Errorf("no quorum: %d of %d agents live, %d required", q.Live, q.Size, q.Required)
	}
	return a.workersStalled(time.Now())
}

// DeadLetters lists stored dead letters.
func (a *Agent) DeadLetters(ctx context.Context, f store.DeadLetterFilter) ([]store.DeadLetter, error) {
	return a.store.DeadLetters(ctx, f)
}

// ReplayDeadLetter sends a dead letter back to its original destination and
// deletes the record.
func (a *Agent) ReplayDeadLetter(ctx context.Context, id string) error {
	dl, err := a.store.DeadLetter(ctx, id)
	if err != nil {
		return err
	}
	if err := a.listeners.Replay(ctx, dl); err != nil {
		return &api.Error{Status: http.StatusBadGateway, Code: api.CodeUnavailable, Message: "replay: " + err.Error()}
	}
	return a.store.DeleteDeadLetter(ctx, id)
}

// connConfigs returns the listeners' view of cfg's connections; an error
// names a connection whose TLS files cannot be read.
func connConfigs(cfg Config) (map[string]triggers.ConnConfig, error) {
	out := make(map[string]triggers.ConnConfig, len(cfg.Connections))
	for name, c := range cfg.Connections {
		cc, err := c.ConnConfig(name)
		if err != nil {
			return nil, fmt.Errorf("connection %s: %w", name, err)
		}
		out[name] = cc
	}
	return out, nil
}

// ConnConfig returns c as the listeners (and triggers.Dial) take it, named
// name: its URL parsed, its login, its TLS files read.
func (c Connection) ConnConfig(name string) (triggers.ConnConfig, error) {
	u, err := ParseBrokerURL(c.URL)
	if err != nil {
		return triggers.ConnConfig{}, err
	}
	tc, err := c.tlsConfig(u)
	if err != nil {
		return triggers.ConnConfig{}, err
	}
	login, pass := c.Login, c.Passcode
	if login == "" {
		login, pass = u.Login, u.Passcode
	}
	return triggers.ConnConfig{
		Name: name, Addr: u.Addr, Login: login, Passcode: pass, Host: c.Host,
		HeartBeat: time.Duration(c.HeartBeat), TLS: tc,
	}, nil
}

func connectionNames(cfg Config) string {
	names := make([]string, 0, len(cfg.Connections))
	for n := range cfg.Connections {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
