package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/opsrunner/opsrunner/internal/brokercaps"
	"github.com/opsrunner/opsrunner/triggers"
)

// brokerKinds remembers which kind of broker each connection reaches,
// learned by connecting once (the CONNECTED frame's server header).
type brokerKinds struct {
	mu    sync.Mutex
	kinds map[string]string
}

// kind returns the broker kind behind c, connecting to find out the first
// time; "unknown" when the broker cannot be reached now (then it is asked
// again next time).
func (b *brokerKinds) kind(c triggers.ConnConfig) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if k, ok := b.kinds[c.Name]; ok {
		return k
	}
	k := probeKind(c)
	if k != brokercaps.Unknown {
		if b.kinds == nil {
			b.kinds = map[string]string{}
		}
		b.kinds[c.Name] = k
	}
	return k
}

// probeKind connects once and tells the broker kind from its CONNECTED
// frame; it gives up after 5 s.
func probeKind(c triggers.ConnConfig) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	server, err := triggers.Probe(ctx, c)
	if err != nil {
		return brokercaps.Unknown
	}
	return brokercaps.Detect(server)
}

// selectorSupported reports whether the broker behind connection honours
// SUBSCRIBE selectors. A broker that cannot be reached at deploy time is
// given the benefit of the doubt; its listener reports the broker's refusal.
func (a *Agent) selectorSupported(connection string) bool {
	if connection == "default" && a.cfg.EmbeddedBroker() {
		return true
	}
	c, ok := a.conns[connection]
	if !ok {
		return false
	}
	k := a.kinds.kind(c)
	return k == brokercaps.Unknown || brokercaps.For(k).Selectors
}

// embeddedBroker reports whether connection reaches an opsrunner broker:
// this agent's own, or one the connection's probe recognised.
func (a *Agent) embeddedBroker(connection string) bool {
	if connection == "default" && a.cfg.EmbeddedBroker() {
		return true
	}
	c, ok := a.conns[connection]
	return ok && a.kinds.kind(c) == brokercaps.Embedded
}

// workersStalled says why the agent should take no more work when every
// worker has been busy for longer than the longest time limit of the
// deployed operations plus the stuck grace: some run holds its worker past
// its limit, and new requests would only queue. nil otherwise; a worker
// that frees makes it nil again.
func (a *Agent) workersStalled(now time.Time) error {
	since, busy := a.workers.BusySince()
	if !busy {
		return nil
	}
	longest := a.longestLimit()
	busyFor := now.Sub(since)
	if busyFor <= longest+a.stuckGrace() {
		return nil
	}
	return fmt.Errorf("no worker free for %s (%d of %d busy; longest timeout %s)",
		roundDuration(busyFor), a.workers.InFlight(), a.workers.Capacity(), roundDuration(longest))
}

// roundDuration rounds d for people: to the second from a second up, to
// the millisecond below.
func roundDuration(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}
