package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/agent"
)

// writeCA writes a private CA's certificate to caFile, and a certificate
// it signs for 127.0.0.1 with its key to certFile and keyFile.
func writeCA(t *testing.T, caFile, certFile, keyFile string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, key := newKey(), newKey()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "opsrunner test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "agent"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	caCert, _ := x509.ParseCertificate(caDER)
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	for file, block := range map[string]*pem.Block{
		caFile: {Type: "CERTIFICATE", Bytes: caDER}, certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// The CLI talks to an agent serving HTTPS with a private CA (--ca-file)
// and with scoped tokens: a deploy token deploys, a read token lists, and
// a token without the scope gets the agent's 403 naming it. Without the
// CA the CLI says to give --ca-file.
func TestClientWithScopedTokensOverHTTPS(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCA(t, caFile, certFile, keyFile)

	cfg := agent.Defaults()
	cfg.HTTPAddr, cfg.EmbeddedBrokerAddr, cfg.DataDir, cfg.AgentID = "127.0.0.1:0", "127.0.0.1:0", t.TempDir(), "cli-tls"
	cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	cfg.Tokens = []agent.Token{
		{Token: "deployer", Scopes: []string{"deploy:shop"}},
		{Token: "reader", Scopes: []string{"read:shop"}},
	}
	a, err := agent.New(cfg, nil)
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

	project := filepath.Join(t.TempDir(), "shop")
	os.Mkdir(project, 0o755)
	os.WriteFile(filepath.Join(project, "opsrunner.yaml"), []byte("project: shop\noperations:\n  - name: op\n    script: op.js\n"), 0o644)
	os.WriteFile(filepath.Join(project, "op.js"), []byte("function handle() { return 1; }\n"), 0o644)

	server := "https://" + a.HTTPAddr()
	run := func(env map[string]string, args ...string) (string, error) {
		root := newRoot(func(k string) string { return env[k] })
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(args, "--server", server))
		root.SetContext(context.Background())
		err := root.Execute()
		return out.String(), err
	}
	withCA := map[string]string{"OPSRUNNER_CA_FILE": caFile}

	if out, err := run(nil, "deploy", project, "--token", "deployer", "--ca-file", caFile); err != nil || !strings.Contains(out, "deployed shop version 1") {
		t.Fatalf("deploy with the deploy token: %v %s", err, out)
	}
	if out, err := run(withCA, "runs", "--token", "reader"); err != nil {
		t.Fatalf("runs with the read token (CA from OPSRUNNER_CA_FILE): %v %s", err, out)
	}
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{withCA, []string{"listeners", "--token", "deployer"}, "this token lacks the scope read:* (403 forbidden)"},
		{withCA, []string{"deploy", project, "--token", "reader"}, "this token lacks the scope deploy:shop (403 forbidden)"},
		{withCA, []string{"runs", "--token", "nobody"}, "a valid bearer token is required (401 unauthorized)"},
		{nil, []string{"runs", "--token", "reader"}, "give its certificate with --ca-file"},
		{nil, []string{"runs", "--token", "reader", "--ca-file", filepath.Join(dir, "none.pem")}, "--ca-file: open"},
		{nil, []string{"runs", "--token", "reader", "--ca-file", keyFile}, "no PEM certificate in it"},
	} {
		if out, err := run(tc.env, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v %s; want an error saying %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
	}
}
