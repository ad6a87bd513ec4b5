package triggers

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/opsrunner/opsrunner/internal/brokercaps"
	"github.com/opsrunner/opsrunner/internal/stompc"
)

// ConnConfig is one named broker connection of the agent configuration. The
// zero HeartBeat means 10s (it also sets how soon a silent broker is given
// up on: see dial); Host empty means the broker's default (for RabbitMQ, the
// "/" vhost).
type ConnConfig struct {
	Name      string
	Addr      string // host:port of the STOMP endpoint
	Login     string
	Passcode  string
	Host      string
	HeartBeat time.Duration
	// TLS, when not nil, makes the connection TLS with this configuration
	// (trusted CAs, client certificate); an empty ServerName means Addr's
	// host.
	TLS *tls.Config
}

// SelectorSupported reports whether brokers of kind (a brokercaps kind)
// evaluate SUBSCRIBE selectors (JMS SQL-92). Deploy validation refuses a
// listener with a selector on a connection whose broker returns false.
func SelectorSupported(kind string) bool { return brokercaps.For(kind).Selectors }

// connectTimeout bounds one connection attempt: TCP connect, TLS handshake
// and the STOMP CONNECT answered by CONNECTED. A broker that accepts the TCP
// connection but never answers (hung, or frozen with its socket open) must
// not keep a listener "connecting" for ever: the attempt fails and is retried.
const connectTimeout = 10 * time.Second

// dial opens a STOMP 1.2 connection. extra CONNECT headers may be given
// (client-id for durable subscriptions). It blocks until CONNECTED, ctx ends
// or connectTimeout passes.
//
// Heart-beats go both ways, every cc.HeartBeat or as seldom as the broker
// asks. The connection is declared dead, and every pending receive and
// receipt fails, when the broker has been silent for 2 × (the larger of its
// interval and cc.HeartBeat, plus min(cc.HeartBeat, 5s)): 4 s for a 1 s
// heart-beat, 30 s for the default 10 s. ActiveMQ sends its heart-beats up
// to two intervals apart, so less would drop healthy connections.
func dial(ctx context.Context, cc ConnConfig, extra map[string]string) (*stomp.Conn, error) {
	hb := cc.heartBeat()
	nc, err := cc.dialNet(ctx)
	if err != nil {
		return nil, err
	}
	opts := []func(*stomp.Conn) error{
		stomp.ConnOpt.AcceptVersion(stomp.V12),
		stomp.ConnOpt.HeartBeat(hb, hb),
		// go-stomp's fixed 5 s allowance would make a short heart-beat
		// meaningless (12 s to notice a silent broker at 1 s).
		stomp.ConnOpt.HeartBeatError(min(hb, stomp.DefaultHeartBeatError)),
		stomp.ConnOpt.HeartBeatGracePeriodMultiplier(2),
		stomp.ConnOpt.RcvReceiptTimeout(30 * time.Second),
		stomp.ConnOpt.DisconnectReceiptTimeout(5 * time.Second),
		stomp.ConnOpt.UnsubscribeReceiptTimeout(5 * time.Second),
		stomp.ConnOpt.Logger(quietLogger{}),
	}
	if cc.Login != "" || cc.Passcode != "" {
		opts = append(opts, stomp.ConnOpt.Login(cc.Login, cc.Passcode))
	}
	host := cc.Host
	if host == "" {
		host = "/"
	}
	opts = append(opts, stomp.ConnOpt.Host(host))
	for k, v := range extra {
		opts = append(opts, stomp.ConnOpt.Header(k, v))
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	c, err := stomp.Connect(nc, opts...)
	if err != nil {
		nc.Close()
		return nil, cc.connectError(err)
	}
	// Once connected, heart-beats take over from the deadline (clearing it
	// also applies to the read go-stomp's reader may already be blocked in).
	if err := nc.SetDeadline(time.Time{}); err != nil {
		_ = c.MustDisconnect()
		return nil, fmt.Errorf("connect to broker %s (%s): %w", cc.Name, cc.Addr, err)
	}
	return c, nil
}

// dialConsumer opens the connection a listener consumes on, as dial does
// (same CONNECT, heart-beats, silence allowance and timeouts), with the lean
// client of internal/stompc.
func dialConsumer(ctx context.Context, cc ConnConfig, extra map[string]string) (*stompc.Conn, error) {
	hb := cc.heartBeat()
	nc, err := cc.dialNet(ctx)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	c, err := stompc.Connect(nc, stompc.Options{
		Login: cc.Login, Passcode: cc.Passcode, Host: cc.Host, Headers: extra,
		HeartBeat: hb, Silence: min(hb, stomp.DefaultHeartBeatError), ReceiptTimeout: 30 * time.Second,
	})
	if err != nil {
		nc.Close()
		return nil, cc.connectError(err)
	}
	return c, nil
}

// heartBeat is the heart-beat interval asked of the broker: cc.HeartBeat,
// 10 s when unset.
func (cc ConnConfig) heartBeat() time.Duration {
	if cc.HeartBeat <= 0 {
		return 10 * time.Second
	}
	return cc.HeartBeat
}

// dialNet opens the TCP connection, with the TLS handshake done when cc
// asks for TLS, within connectTimeout. The connection keeps what is left of
// that time as its deadline, for writing CONNECT and reading CONNECTED; the
// caller clears it once connected.
func (cc ConnConfig) dialNet(ctx context.Context) (net.Conn, error) {
	deadline := time.Now().Add(connectTimeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	d := net.Dialer{KeepAlive: 30 * time.Second}
	var (
		nc  net.Conn
		err error
	)
	if cc.TLS == nil {
		nc, err = d.DialContext(ctx, "tcp", cc.Addr)
	} else {
		cfg := cc.TLS.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(cc.Addr)
		}
		td := tls.Dialer{NetDialer: &d, Config: cfg}
		nc, err = td.DialContext(ctx, "tcp", cc.Addr)
	}
	if err != nil {
		return nil, fmt.Errorf("dial broker %s (%s): %w", cc.Name, cc.Addr, err)
	}
	if err := nc.SetDeadline(deadline); err != nil {
		nc.Close()
		return nil, fmt.Errorf("connect to broker %s (%s): %w", cc.Name, cc.Addr, err)
	}
	return nc, nil
}

// connectError is err, from the CONNECT exchange, as a listener reports it.
func (cc ConnConfig) connectError(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("no CONNECTED within %s: %w", connectTimeout, err)
	}
	return fmt.Errorf("connect to broker %s (%s): %w", cc.Name, cc.Addr, err)
}

// Dial opens a STOMP 1.2 connection to the broker behind cc as a listener
// does (TLS, login, heart-beats, the connect timeout), for tools that send
// or look.
func Dial(ctx context.Context, cc ConnConfig) (*stomp.Conn, error) { return dial(ctx, cc, nil) }

// Probe connects to the broker behind cc once, as a listener would, and
// returns the server header of its CONNECTED frame ("" when it sends none).
func Probe(ctx context.Context, cc ConnConfig) (string, error) {
	c, err := Dial(ctx, cc)
	if err != nil {
		return "", err
	}
	defer c.Disconnect()
	return c.Server(), nil
}

// withHeaders is a frame option setting every header of h.
func withHeaders(h map[string]string) func(*frame.Frame) error {
	return func(f *frame.Frame) error {
		for k, v := range h {
			f.Header.Set(k, v)
		}
		return nil
	}
}

// quietLogger drops go-stomp's own log lines; errors reach us as values.
type quietLogger struct{}

func (quietLogger) Debugf(string, ...interface{})   {}
func (quietLogger) Debug(string)                    {}
func (quietLogger) Infof(string, ...interface{})    {}
func (quietLogger) Info(string)                     {}
func (quietLogger) Warningf(string, ...interface{}) {}
func (quietLogger) Warning(string)                  {}
func (quietLogger) Errorf(string, ...interface{})   {}
func (quietLogger) Error(string)                    {}
