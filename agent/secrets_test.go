package agent_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/secrets"
	"github.com/opsrunner/opsrunner/triggers"
)

// Without secrets_key the first start generates the key file (0600) and a
// restart on the same data dir reads the secrets set before; the store
// file holds no value in plain text.
func TestSecretsSurviveRestartWithGeneratedKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ta := startAgent(t, func(c *agent.Config) { c.DataDir = dir })
	const value = "agent-plain-value-4711"
	if r := ta.do(t, http.MethodPut, "/api/v1/projects/shop/secrets/API_KEY", "", []byte(value), nil); r.Status != http.StatusNoContent {
		t.Fatalf("PUT secret: %d %s", r.Status, r.Body)
	}
	if got, ok, err := ta.Secret(t.Context(), "shop", "API_KEY"); err != nil || !ok || got != value {
		t.Fatalf("Secret = %q, %v, %v", got, ok, err)
	}
	keyFile := filepath.Join(dir, secrets.KeyFile)
	info, err := os.Stat(keyFile)
	if err != nil || info.Mode() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode -rw-------", info, err)
	}
	key, _ := os.ReadFile(keyFile)
	ta.stop()

	db, err := os.ReadFile(filepath.Join(dir, "opsrunner.db"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(db, []byte("API_KEY")) || bytes.Contains(db, []byte(value)) {
		t.Fatalf("store file: holds the name %v, holds the value %v; want the name only",
			bytes.Contains(db, []byte("API_KEY")), bytes.Contains(db, []byte(value)))
	}

	again := startAgent(t, func(c *agent.Config) { c.DataDir = dir })
	if got, ok, err := again.Secret(t.Context(), "shop", "API_KEY"); err != nil || !ok || got != value {
		t.Fatalf("after a restart: Secret = %q, %v, %v", got, ok, err)
	}
	if now, _ := os.ReadFile(keyFile); !bytes.Equal(now, key) {
		t.Fatal("the restart replaced the key file")
	}
}

// With secrets_key no key file is made; an agent given another key cannot
// read the secrets and says why.
func TestSecretsConfiguredKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ta := startAgent(t, func(c *agent.Config) { c.DataDir = dir; c.SecretsKey = newKeyText() })
	if err := ta.PutSecret(t.Context(), "shop", "API_KEY", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, secrets.KeyFile)); err == nil {
		t.Fatal("a key file was made although secrets_key is set")
	}
	ta.stop()

	other := startAgent(t, func(c *agent.Config) { c.DataDir = dir; c.SecretsKey = newKeyText() })
	_, ok, err := other.Secret(t.Context(), "shop", "API_KEY")
	want := "secret API_KEY of project shop cannot be opened with this agent's key: every agent of a cluster needs the same secrets_key"
	if ok || err == nil || err.Error() != want {
		t.Fatalf("Secret under another key: ok = %v, err = %v; want %q", ok, err, want)
	}
}

// secrets_key comes from the YAML file or OPSRUNNER_SECRETS_KEY; a bad one
// stops the agent at start with an error that says what is wrong and does
// not show it.
func TestSecretsKeyConfiguration(t *testing.T) {
	t.Parallel()
	good := newKeyText()
	path := filepath.Join(t.TempDir(), "opsrunner.yaml")
	if err := os.WriteFile(path, []byte("secrets_key: "+good+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := agent.Load(path, func(string) string { return "" })
	if err != nil || cfg.SecretsKey != good {
		t.Fatalf("from YAML: %q, %v", cfg.SecretsKey, err)
	}
	for _, tc := range []struct{ value, want string }{
		{"c2hvcnQ=", "secrets_key: decodes to 5 bytes, want 32"},
		{"not*base64", "secrets_key: not base64"},
	} {
		cfg, err := agent.Load("", func(k string) string {
			if k == "OPSRUNNER_SECRETS_KEY" {
				return tc.value
			}
			return ""
		})
		if err != nil || cfg.SecretsKey != tc.value {
			t.Fatalf("from the environment: %q, %v", cfg.SecretsKey, err)
		}
		cfg.DataDir = t.TempDir()
		err = cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), tc.value) {
			t.Errorf("Validate with secrets_key %q: %v; want %q without the value", tc.value, err, tc.want)
		}
	}
}

// A webhook whose secretEnv names a project secret checks signatures made
// with it; changing the secret needs no redeploy.
func TestWebhookSignedWithProjectSecret(t *testing.T) {
	t.Parallel()
	ta := startAgent(t, nil)
	ta.mustDeploy(t, "signing", bundle(t, map[string]string{
		"opsrunner.yaml": "project: signing\noperations:\n  - name: echo\n    script: echo.js\n    webhook: {path: echo, secretEnv: SIGNING_PROJECT_SECRET}\n",
		"echo.js":        "function handle(event) { return {ok: true}; }\n",
	}))
	body := []byte(`{"n":1}`)
	post := func(secret string) response {
		return ta.do(t, http.MethodPost, "/hooks/signing/echo", "application/json", body,
			map[string]string{triggers.SignatureHeader: triggers.Sign([]byte(secret), body)})
	}
	if r := post("first"); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("secret not set: %d %s; want 503", r.Status, r.Body)
	}
	for _, secret := range []string{"first", "second"} {
		if r := ta.do(t, http.MethodPut, "/api/v1/projects/signing/secrets/SIGNING_PROJECT_SECRET", "", []byte(secret), nil); r.Status != http.StatusNoContent {
			t.Fatalf("PUT secret: %d %s", r.Status, r.Body)
		}
		if r := post(secret); r.Status != http.StatusOK {
			t.Fatalf("signed with %s: %d %s", secret, r.Status, r.Body)
		}
	}
	if r := post("first"); r.Status != http.StatusUnauthorized {
		t.Fatalf("signed with the old secret: %d %s; want 401", r.Status, r.Body)
	}
}

func newKeyText() string {
	k := make([]byte, secrets.KeySize)
	rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}
