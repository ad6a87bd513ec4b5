package api_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opsrunner/opsrunner/api"
	"github.com/opsrunner/opsrunner/scripts"
)

// proxyBackend has one webhook and is always too busy for it: it names
// target as the agent to serve it.
type proxyBackend struct {
	api.Backend
	target string
}

func (b proxyBackend) Webhook(project, _ string) (*scripts.Project, *scripts.Operation, error) {
	return &scripts.Project{Name: project}, &scripts.Operation{Name: "op"}, nil
}

func (b proxyBackend) ProxyTarget() string { return b.target }

// With PeerTLS, a webhook goes to the less loaded agent over HTTPS, its
// certificate checked with the configuration PeerTLS gives for the
// agent's host; without, over plain HTTP (which an HTTPS agent refuses).
func TestWebhooksProxyOverHTTPSWithPeerTLS(t *testing.T) {
	t.Parallel()
	peer := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Proxied-By", r.Header.Get("X-Opsrunner-Proxied-By"))
		w.Write([]byte("served by the peer"))
	}))
	peer.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes below
	peer.StartTLS()
	defer peer.Close()
	target := strings.TrimPrefix(peer.URL, "https://")
	trusted := x509.NewCertPool()
	trusted.AddCert(peer.Certificate())
	var mu sync.Mutex
	var hosts []string
	peerTLS := func(roots *x509.CertPool) func(string) *tls.Config {
		return func(host string) *tls.Config {
			mu.Lock()
			defer mu.Unlock()
			hosts = append(hosts, host)
			return &tls.Config{ServerName: host, RootCAs: roots}
		}
	}

	h := api.New(proxyBackend{target: target}, api.Options{PeerTLS: peerTLS(trusted)})
	rec := call(h, http.MethodPost, "/hooks/p/x", []byte("{}"), map[string]string{"Host": "busy:8080"})
	if rec.Code != http.StatusOK || rec.Body.String() != "served by the peer" || rec.Header().Get("X-Proxied-By") == "" {
		t.Fatalf("proxied over HTTPS: %d %s %v", rec.Code, rec.Body, rec.Header())
	}
	mu.Lock()
	asked := slices.Clone(hosts)
	mu.Unlock()
	if !slices.Equal(asked, []string{"127.0.0.1"}) {
		t.Fatalf("PeerTLS was asked for %v; want [127.0.0.1]", asked)
	}

	untrusting := api.New(proxyBackend{target: target}, api.Options{PeerTLS: peerTLS(x509.NewCertPool())})
	if rec := call(untrusting, http.MethodPost, "/hooks/p/x", []byte("{}"), nil); rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), "certificate") {
		t.Fatalf("to a peer whose certificate is not trusted: %d %s; want 502 naming the certificate", rec.Code, rec.Body)
	}
	plain := api.New(proxyBackend{target: target}, api.Options{})
	if rec := call(plain, http.MethodPost, "/hooks/p/x", []byte("{}"), nil); rec.Code == http.StatusOK {
		t.Fatalf("plain HTTP to an HTTPS peer: %d %s", rec.Code, rec.Body)
	}
}
