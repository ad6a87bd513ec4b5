package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/opsrunner/opsrunner/api"
	"github.com/opsrunner/opsrunner/store"
)

// certFiles is the HTTP server's certificate, read from tls_cert_file and
// tls_key_file and read again when either changes: the server asks for it
// on each handshake (GetCertificate), and at most once a second that looks
// at the files' modification times and sizes. New files that do not load
// (a rotation half written) leave the certificate as it was and are tried
// again a second later. Its methods are goroutine-safe.
type certFiles struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]fileStamp // of certFile and keyFile when cert was read
	checked time.Time    // when the files were last looked at
}

// fileStamp tells a file changed: its modification time and size.
type fileStamp struct {
	mod  time.Time
	size int64
}

// loadCertFiles reads the certificate and key; a missing or malformed one
// is an error here, when the agent starts.
func loadCertFiles(certFile, keyFile string, log *slog.Logger) (*certFiles, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &certFiles{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	stamp, err := c.stamps()
	if err == nil {
		err = c.load(stamp)
	}
	if err != nil {
		return nil, fmt.Errorf("tls_cert_file/tls_key_file: %w", err)
	}
	c.checked = c.now()
	return c, nil
}

// stamps looks at both files.
func (c *certFiles) stamps() ([2]fileStamp, error) {
	var out [2]fileStamp
	for i, name := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return out, err
		}
		out[i] = fileStamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return out, nil
}

// load reads the pair and keeps it with stamp; c.mu is held (or c is not
// shared yet).
func (c *certFiles) load(stamp [2]fileStamp) error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return err
	}
	c.cert, c.stamp = &cert, stamp
	return nil
}

// current returns the certificate, read again first if a second has
// passed since the last look and the files changed.
func (c *certFiles) current() *tls.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if now.Sub(c.checked) < time.Second {
		return c.cert
	}
	c.checked = now
	stamp, err := c.stamps()
	switch {
	case err != nil:
		c.log.Warn("TLS certificate files unreadable; serving the one read before", "error", err)
	case stamp != c.stamp:
		if err := c.load(stamp); err != nil {
			c.log.Warn("TLS certificate files changed but do not load; serving the one read before", "error", err)
		} else {
			c.log.Info("TLS certificate reloaded", "cert", c.certFile)
		}
	}
	return c.cert
}

// serverConfig is the HTTP server's TLS configuration.
func (c *certFiles) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.current(), nil },
	}
}

// peerConfig is the client configuration of a connection to another
// agent at host (webhook proxying): the system's CAs are trusted, and so
// is every certificate of this agent's own file (the agents of a cluster
// share a certificate, or a CA that the file's chain ends with).
func (c *certFiles) peerConfig(host string) *tls.Config {
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	for _, der := range c.current().Certificate {
		if cert, err := x509.ParseCertificate(der); err == nil {
			roots.AddCert(cert)
		}
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host, RootCAs: roots}
}

// serveOptions returns the HTTP layer's options that serving decides:
// the tokens, the metrics token and, with TLS, how other agents are
// reached. It reads the token and certificate files.
func (a *Agent) serveOptions(cfg Config) (api.Options, error) {
	tokens, err := cfg.apiTokens()
	if err != nil {
		return api.Options{}, fmt.Errorf("config: %w", err)
	}
	opts := api.Options{Tokens: tokens, MetricsToken: cfg.MetricsToken}
	if cfg.TLSCertFile != "" {
		if a.certs, err = loadCertFiles(cfg.TLSCertFile, cfg.TLSKeyFile, a.log); err != nil {
			return api.Options{}, err
		}
		opts.PeerTLS = a.certs.peerConfig
	}
	return opts, nil
}

var _ api.DeadLetterReader = (*Agent)(nil)

// DeadLetter implements api.DeadLetterReader: the API checks a replay's
// scope against the dead letter's project.
func (a *Agent) DeadLetter(ctx context.Context, id string) (store.DeadLetter, error) {
	return a.store.DeadLetter(ctx, id)
}

// httpScheme is "https" when the agent serves TLS, else "http".
func (a *Agent) httpScheme() string {
	if a.certs != nil {
		return "https"
	}
	return "http"
}

// serveHTTP serves the API on the HTTP listener, over TLS when configured,
// until srv shuts down.
func (a *Agent) serveHTTP(srv *http.Server) error {
	var err error
	if a.certs != nil {
		srv.TLSConfig = a.certs.serverConfig()
		err = srv.ServeTLS(a.httpLn, "", "")
	} else {
		err = srv.Serve(a.httpLn)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
