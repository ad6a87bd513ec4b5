package agent

import (
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/go-stomp/stomp/v3"
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

func probeKind(c triggers.ConnConfig) string {
	nc, err := net.DialTimeout("tcp", c.Addr, 3*time.Second)
	if err != nil {
		return brokercaps.Unknown
	}
	if c.TLS {
		nc = tls.Client(nc, &tls.Config{InsecureSkipVerify: c.TLSInsecure, ServerName: hostOnly(c.Addr)})
	}
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	opts := []func(*stomp.Conn) error{}
	if c.Login != "" {
		opts = append(opts, stomp.ConnOpt.Login(c.Login, c.Passcode))
	}
	if c.Host != "" {
		opts = append(opts, stomp.ConnOpt.Host(c.Host))
	}
	conn, err := stomp.Connect(nc, opts...)
	if err != nil {
		nc.Close()
		return brokercaps.Unknown
	}
	defer conn.Disconnect()
	return brokercaps.Detect(conn.Server())
}

func hostOnly(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
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
