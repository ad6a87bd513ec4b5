package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opsrunner/opsrunner/api"
)

// loadYAML loads a configuration file with body and the environment env.
func loadYAML(t *testing.T, body string, env map[string]string) (Config, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "opsrunner.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return Load(p, func(k string) string { return env[k] })
}

// tokens takes plain strings (admin tokens) and mappings with the token
// given itself, as a SHA-256 or in a file, each with its scopes; the API
// gets their digests and scopes. metrics_token and the TLS files are read
// too, and the environment overrides them all.
func TestTokensConfiguration(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hashed := sha256.Sum256([]byte("hashed"))
	c, err := loadYAML(t, `
tokens:
  - plain-admin
  - {token: ci, scopes: ["deploy:shop", "read:shop"]}
  - token_sha256: `+hex.EncodeToString(hashed[:])+`
    scopes: ["read:*"]
  - {token_file: `+tokenFile+`, scopes: ["run:team-*"]}
metrics_token: scrape
tls_cert_file: /etc/opsrunner/cert.pem
tls_key_file: /etc/opsrunner/key.pem
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	got, err := c.apiTokens()
	if err != nil {
		t.Fatal(err)
	}
	want := []api.Token{
		api.NewToken("plain-admin", api.ScopeAdmin),
		api.NewToken("ci", "deploy:shop", "read:shop"),
		api.NewToken("hashed", "read:*"),
		api.NewToken("from-file", "run:team-*"),
	}
	if !slices.EqualFunc(got, want, func(a, b api.Token) bool { return a.SHA256 == b.SHA256 && slices.Equal(a.Scopes, b.Scopes) }) {
		t.Fatalf("tokens: %+v\nwant %+v", got, want)
	}
	if c.MetricsToken != "scrape" || c.TLSCertFile != "/etc/opsrunner/cert.pem" || c.TLSKeyFile != "/etc/opsrunner/key.pem" {
		t.Fatalf("metrics token and TLS files: %q %q %q", c.MetricsToken, c.TLSCertFile, c.TLSKeyFile)
	}

	c, err = loadYAML(t, "tokens: [a, {token: b, scopes: [read:x]}]\nmetrics_token: m\n", map[string]string{
		"OPSRUNNER_TOKENS": "env-one, env-two", "OPSRUNNER_METRICS_TOKEN": "env-m",
		"OPSRUNNER_TLS_CERT_FILE": "c.pem", "OPSRUNNER_TLS_KEY_FILE": "k.pem",
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Token{AdminToken("env-one"), AdminToken("env-two")}; !slices.EqualFunc(c.Tokens, want, func(a, b Token) bool {
		return a.Token == b.Token && slices.Equal(a.Scopes, b.Scopes)
	}) || c.MetricsToken != "env-m" || c.TLSCertFile != "c.pem" || c.TLSKeyFile != "k.pem" {
		t.Fatalf("OPSRUNNER_TOKENS (admin tokens, comma-separated) and the others override the file: %+v %q %q %q", c.Tokens, c.MetricsToken, c.TLSCertFile, c.TLSKeyFile)
	}
}

// Every bad token entry is a configuration error naming the entry and
// what is wrong, never the token itself.
func TestBadTokensAreConfigErrors(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "missing")
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte(" \n"), 0o600)
	for body, want := range map[string]string{
		`tokens: [{token: s3cret, scopes: ["write:shop"]}]`:         `tokens[0]: scope "write:shop": must be admin`,
		`tokens: [ok, {token: s3cret, scopes: ["read"]}]`:           `tokens[1]: scope "read": read needs a project pattern`,
		`tokens: [{token: s3cret, scopes: ["read:Shop"]}]`:          `not 'S'`,
		`tokens: [{token: s3cret}]`:                                 "tokens[0]: scopes is empty",
		`tokens: [{token: s3cret, token_file: x, scopes: [admin]}]`: "exactly one of token, token_sha256 and token_file",
		`tokens: [{scopes: [admin]}]`:                               "exactly one of token, token_sha256 and token_file",
		`tokens: [""]`:                                              "exactly one of token, token_sha256 and token_file",
		`tokens: [{token_sha256: s3cret, scopes: [admin]}]`:         "token_sha256 must be 64 hex digits",
		`tokens: [{token_file: ` + missing + `, scopes: [admin]}]`:  "token_file: open",
		`tokens: [{token_file: ` + empty + `, scopes: [admin]}]`:    "is empty",
		"tls_cert_file: c.pem":                                      "tls_cert_file and tls_key_file go together",
		"tls_key_file: k.pem":                                       "tls_cert_file and tls_key_file go together",
	} {
		c, err := loadYAML(t, body, nil)
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: %v; want an error saying %q (without the token)", body, err, want)
		}
	}
	for body, want := range map[string]string{
		`tokens: [{token: s3cret, scope: [admin]}]`: `line 1: a token has no key "scope"`,
		`tokens: [[s3cret]]`:                        "a token is a string (an admin token) or a mapping",
	} {
		if _, err := loadYAML(t, body, nil); err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: %v; want an error saying %q (without the token)", body, err, want)
		}
	}
}
