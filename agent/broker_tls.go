package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/opsrunner/opsrunner/broker"
)

// BrokerTLSAddr is the address the embedded broker serves STOMP over TLS
// on (stomp+ssl://ADDR), "" when it does not. Set once Started is closed.
func (a *Agent) BrokerTLSAddr() string {
	if a.brokerTLSLn == nil {
		return ""
	}
	return a.brokerTLSLn.Addr().String()
}

// ListenBrokerTLS listens on addr for STOMP over TLS: the certificate and
// key are read from certFile and keyFile now (an error if they do not
// load) and again when either changes, at most once a second, as the HTTP
// server's are (certFiles); new files that do not load leave the
// certificate as it was. Clients are not asked for certificates: they
// authenticate with login and passcode. The agent and the standalone
// broker command serve the embedded broker on it with Broker.Serve, so
// that the same connection code, users and limits apply, and the loopback
// rule of a broker without users.
func ListenBrokerTLS(addr, certFile, keyFile string, log *slog.Logger) (net.Listener, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	certs := &certFiles{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	stamp, err := certs.stamps()
	if err == nil {
		err = certs.load(stamp)
	}
	if err != nil {
		return nil, fmt.Errorf("broker TLS certificate and key: %w", err)
	}
	certs.checked = certs.now()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("broker TLS listen %s: %w", addr, err)
	}
	return tls.NewListener(ln, certs.serverConfig()), nil
}

// startBrokerTLS listens on broker_tls_addr, when set, and serves brk
// there on a goroutine of wg until the broker closes. A failure to serve
// is sent to errs and cancels Serve.
func (a *Agent) startBrokerTLS(ctx context.Context, brk *broker.Broker, cancel func(), wg *sync.WaitGroup, errs chan<- error) error {
	if a.cfg.BrokerTLSAddr == "" {
		return nil
	}
	ln, err := ListenBrokerTLS(a.cfg.BrokerTLSAddr, a.cfg.BrokerTLSCertFile, a.cfg.BrokerTLSKeyFile, a.log.With("component", "broker-tls"))
	if err != nil {
		return fmt.Errorf("embedded broker: %w", err)
	}
	a.brokerTLSLn = ln
	wg.Go(func() {
		if err := brk.Serve(context.WithoutCancel(ctx), ln); err != nil && ctx.Err() == nil {
			errs <- fmt.Errorf("embedded broker TLS listener: %w", err)
			cancel()
		}
	})
	a.log.Info("embedded broker TLS listening", "addr", "stomp+ssl://"+ln.Addr().String())
	return nil
}
