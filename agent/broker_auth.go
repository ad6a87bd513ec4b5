package agent

import (
	"crypto/rand"
	"encoding/hex"
	"slices"

	"github.com/opsrunner/opsrunner/broker"
)

// embeddedBrokerUsers returns the users the embedded broker, bound at
// bound, runs with, and makes the agent's own connections to it (the
// default connection, and any other to its address without a login of its
// own) authenticate: with broker_users configured, the agent adds a user
// of its own, with a login and passcode made up at each start and kept in
// memory only (no other process needs them: agents elsewhere reach this
// broker with a configured user), allowed to read and write everything.
// Without broker_users it returns nil: the broker is open, on loopback.
func embeddedBrokerUsers(cfg Config, bound string) []broker.User {
	if len(cfg.BrokerUsers) == 0 {
		return nil
	}
	self := broker.User{
		Login:    "opsrunner-agent-" + randomHex(8),
		Passcode: randomHex(32),
		Read:     []string{"*"},
		Write:    []string{"*"},
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
