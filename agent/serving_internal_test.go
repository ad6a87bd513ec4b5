package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/store"
)

// writeSelfSigned writes a self-signed certificate for 127.0.0.1 and
// localhost, and its key, to certFile and keyFile; it returns the
// certificate.
func writeSelfSigned(t *testing.T, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "opsrunner test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// testClock is a clock a test moves.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func serial(c *tls.Certificate) string {
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return err.Error()
	}
	return leaf.SerialNumber.String()
}

// The served certificate follows its files: a new pair is served once a
// second has passed since the files were last looked at; files that do
// not load leave the certificate as it was, and are taken once fixed.
func TestCertificateReloadsWhenItsFilesChange(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeSelfSigned(t, certFile, keyFile)
	c, err := loadCertFiles(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := &testClock{now: time.Now()}
	c.now, c.checked = clock.Now, clock.Now()
	get := func() string { return serial(c.current()) }
	if got := get(); got != first.SerialNumber.String() {
		t.Fatalf("serves %s; want the first certificate %s", got, first.SerialNumber)
	}

	second := writeSelfSigned(t, certFile, keyFile)
	clock.add(999 * time.Millisecond)
	if got := get(); got != first.SerialNumber.String() {
		t.Fatalf("within the second: serves %s; want still the first", got)
	}
	clock.add(time.Millisecond)
	if got := get(); got != second.SerialNumber.String() {
		t.Fatalf("a second later: serves %s; want the second %s", got, second.SerialNumber)
	}

	// A rotation half written: a new certificate with the old key.
	third := writeSelfSigned(t, certFile, filepath.Join(dir, "other-key.pem"))
	clock.add(time.Second)
	if got := get(); got != second.SerialNumber.String() {
		t.Fatalf("with a mismatched key: serves %s; want still the second", got)
	}
	newKey, _ := os.ReadFile(filepath.Join(dir, "other-key.pem"))
	if err := os.WriteFile(keyFile, newKey, 0o600); err != nil {
		t.Fatal(err)
	}
	clock.add(time.Second)
	if got := get(); got != third.SerialNumber.String() {
		t.Fatalf("once the key is written: serves %s; want the third %s", got, third.SerialNumber)
	}

	// Files gone: the certificate read before is still served.
	os.Remove(certFile)
	clock.add(time.Second)
	if got := get(); got != third.SerialNumber.String() {
		t.Fatalf("with the files gone: serves %s; want the third", got)
	}
}

// A missing or malformed certificate fails the agent's start, naming the
// settings.
func TestBadCertificateFilesFailTheStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, certFile, keyFile)
	os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("not PEM"), 0o644)
	for _, files := range [][2]string{{filepath.Join(dir, "none.pem"), keyFile}, {filepath.Join(dir, "junk.pem"), keyFile}, {keyFile, certFile}} {
		cfg := Defaults()
		cfg.HTTPAddr, cfg.EmbeddedBrokerAddr, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
		cfg.TLSCertFile, cfg.TLSKeyFile = files[0], files[1]
		if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), "tls_cert_file/tls_key_file") {
			t.Errorf("cert %s, key %s: New = %v; want an error naming tls_cert_file/tls_key_file", filepath.Base(files[0]), filepath.Base(files[1]), err)
		}
	}
}

// With tls_cert_file and tls_key_file the agent serves HTTPS (a plain
// HTTP request is refused), its tokens and metrics token apply, and the
// client configuration it reaches other agents with (webhook proxying)
// trusts the certificate for the host it names and for no other.
func TestAgentServesHTTPS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cert := writeSelfSigned(t, certFile, keyFile)
	cfg := Defaults()
	cfg.HTTPAddr, cfg.EmbeddedBrokerAddr, cfg.DataDir, cfg.AgentID = "127.0.0.1:0", "127.0.0.1:0", t.TempDir(), "tls-agent"
	cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	cfg.Tokens = []Token{AdminToken("root"), {Token: "reader", Scopes: []string{"read:shop"}},
		{Token: "shop-runner", Scopes: []string{"run:shop"}}, {Token: "blog-runner", Scopes: []string{"run:blog"}}}
	cfg.MetricsToken = "scrape"
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx) }() // owner: this test; ends with cancel
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("agent stopped with: %v", err)
		}
	})
	<-a.Started()

	roots := x509.NewCertPool()
	roots.AddCert(cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer client.CloseIdleConnections()
	do := func(method, path, token string) (int, string) {
		req, _ := http.NewRequest(method, "https://"+a.HTTPAddr()+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/healthz", "", 200},
		{"/api/v1/projects", "", 401},
		{"/api/v1/projects", "reader", 200},
		{"/api/v1/projects", "root", 200},
		{"/api/v1/projects/blog", "reader", 403},
		{"/metrics", "", 401},
		{"/metrics", "scrape", 200},
		{"/metrics", "root", 200},
		{"/metrics", "reader", 403},
	} {
		if code, body := do("GET", tc.path, tc.token); code != tc.want {
			t.Errorf("GET %s with %q: %d %s; want %d", tc.path, tc.token, code, body, tc.want)
		}
	}

	// A dead letter's replay needs run on its project (the agent reads the
	// dead letter to know it).
	dl := store.DeadLetter{ID: "dl-1", Project: "shop", Listener: "shop/in", Destination: "/queue/shop.in", Body: "{}"}
	if err := a.store.PutDeadLetter(t.Context(), dl); err != nil {
		t.Fatal(err)
	}
	if code, body := do("POST", "/api/v1/deadletters/dl-1/replay", "blog-runner"); code != 403 || !strings.Contains(body, "this token lacks the scope run:shop") {
		t.Errorf("replay with run:blog: %d %s; want 403 naming run:shop", code, body)
	}
	if code, body := do("POST", "/api/v1/deadletters/dl-1/replay", "shop-runner"); code != 202 {
		t.Errorf("replay with run:shop: %d %s; want 202", code, body)
	}

	resp, err := http.Get("http://" + a.HTTPAddr() + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the HTTPS server: %d; want 400", resp.StatusCode)
		}
	}

	for host, ok := range map[string]bool{"127.0.0.1": true, "localhost": true, "other.example": false} {
		conn, err := tls.Dial("tcp", a.HTTPAddr(), a.certs.peerConfig(host))
		if err == nil {
			conn.Close()
		}
		if (err == nil) != ok {
			t.Errorf("the peer configuration for %s: %v; want ok=%v", host, err, ok)
		}
	}
}
