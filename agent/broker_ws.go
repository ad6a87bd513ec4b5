package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/opsrunner/opsrunner/broker"
)

// BrokerWSPath is where the embedded broker's WebSocket listener serves
// STOMP over WebSocket.
const BrokerWSPath = "/stomp"

// BrokerWSAddr is the address the embedded broker serves STOMP over
// WebSocket on (ws://ADDR/stomp), "" when it does not. Set once Started
// is closed.
func (a *Agent) BrokerWSAddr() string {
	if a.brokerWSLn == nil {
		return ""
	}
	return a.brokerWSLn.Addr().String()
}

// startBrokerWS listens on broker_ws_addr, when set, and serves brk's
// WebSocket handler there on a goroutine of wg; it returns the server for
// the caller to close with the broker (nil when there is none). A failure
// to serve is sent to errs and cancels Serve.
func (a *Agent) startBrokerWS(brk *broker.Broker, cancel func(), wg *sync.WaitGroup, errs chan<- error) (*http.Server, error) {
	if a.cfg.BrokerWSAddr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", a.cfg.BrokerWSAddr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker websocket listen %s: %w", a.cfg.BrokerWSAddr, err)
	}
	a.brokerWSLn = ln
	srv := NewBrokerWSServer(brk, a.log)
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("embedded broker websocket: %w", err)
			cancel()
		}
	})
	a.log.Info("embedded broker websocket listening", "addr", "ws://"+ln.Addr().String()+BrokerWSPath)
	return srv, nil
}

// NewBrokerWSServer returns an http.Server (not yet serving) for brk's
// WebSocket handler at BrokerWSPath and nothing else; the agent and the
// standalone broker command use it. Sessions, once upgraded, are the broker's: their limits
// are its own (ConnectTimeout, heart-beats), so the server has no read or
// write timeout that would outlive the upgrade on the connection.
func NewBrokerWSServer(brk *broker.Broker, log *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET "+BrokerWSPath, brk.WebSocketHandler())
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.With("component", "broker-ws").Handler(), slog.LevelWarn),
	}
}
