package agent

import (
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"slices"

	"github.com/opsrunner/opsrunner/broker"
)

// embeddedBrokerUsers returns the users the embedded broker, bound at
// bound, runs with besides those of broker_users_file, and makes the
// agent's own connections to it (the default connection, and any other to
// its address without a login of its own) authenticate: with broker_users
// or broker_users_file configured, the agent adds an admin user of its
// own, with a login and passcode made up at each start and kept in memory
// only (no other process needs them: agents elsewhere reach this broker
// with a configured user). Without either it returns nil: the broker is
// open, on loopback.
func embeddedBrokerUsers(cfg Config, bound string) []broker.User {
	if !cfg.hasBrokerUsers() {
		return nil
	}
	self := broker.User{
		Login:    "opsrunner-agent-" + randomHex(8),
		Passcode: randomHex(32),
		Admin:    true,
	}
	for name, c := range cfg.Connections {
		if c.Login != "" || c.TLS || !reachesEmbedded(c.URL, cfg.EmbeddedBrokerAddr, bound) {
			continue
		}
		c.Login, c.Passcode = self.Login, self.Passcode
		cfg.Connections[name] = c
	}
	return append(slices.Clone(cfg.BrokerUsers), self)
}

// reachesEmbedded reports whether a connection URL without credentials
// names the embedded broker's configured or bound address.
func reachesEmbedded(rawURL, configured, bound string) bool {
	u, err := ParseBrokerURL(rawURL)
	if err != nil || u.TLS || u.Login != "" {
		return false
	}
	return u.Addr == configured || u.Addr == bound
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail
	return hex.EncodeToString(b)
}

// embeddedBrokerConfig is the embedded broker's configuration: its users
// (embeddedBrokerUsers, made by listenBroker, and broker_users_file) and
// bounds.
func (a *Agent) embeddedBrokerConfig() broker.Config {
	return broker.Config{
		Addr:                a.cfg.EmbeddedBrokerAddr,
		DataDir:             filepath.Join(a.cfg.DataDir, "broker"),
		Users:               a.brokerUsers,
		UsersFile:           a.cfg.BrokerUsersFile,
		MaxConnectionsPerIP: a.cfg.BrokerMaxConnectionsPerIP,
		MaxFrameBytes:       a.cfg.BrokerMaxFrameBytes,
		MaxPendingBytes:     a.cfg.BrokerMaxPendingBytes,
		MaxMemoryBytes:      int64(a.cfg.BrokerMemoryLimit),
		DeadLetterExpired:   a.cfg.BrokerDeadLetterExpired,
		Logger:              a.log.With("component", "broker"),
	}
}
