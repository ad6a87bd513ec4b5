package main_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opsrunner/opsrunner/api"
	"github.com/opsrunner/opsrunner/secrets"
	"github.com/opsrunner/opsrunner/store"
)

// vaultBackend keeps secrets in a real vault over a bbolt store; other
// Backend methods are not called by these tests (the nil interface panics
// if they are).
type vaultBackend struct {
	api.Backend
	vault *secrets.Vault
}

func (b vaultBackend) PutSecret(ctx context.Context, project, name string, value []byte) error {
	return b.vault.Set(ctx, project, name, value)
}

func (b vaultBackend) Secrets(ctx context.Context, project string) ([]store.SecretInfo, error) {
	return b.vault.List(ctx, project)
}

func (b vaultBackend) DeleteSecret(ctx context.Context, project, name string) error {
	return b.vault.Delete(ctx, project, name)
}

// cliWithStdin is cli with stdin.
func cliWithStdin(t *testing.T, server, stdin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "OPSRUNNER_SERVER="+server)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return string(out), code
}

// `opsrunner secrets set|list|rm` round trip: set from stdin (one trailing
// newline dropped) or a file (as is), list names without values (a table,
// or the API's JSON), remove; refusals exit non-zero with the agent's
// message. No output shows a value.
func TestCLISecrets(t *testing.T) {
	t.Parallel()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "opsrunner.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key := make([]byte, secrets.KeySize)
	rand.Read(key)
	vault, err := secrets.NewVault(key, st)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(vaultBackend{vault: vault}, api.Options{}))
	t.Cleanup(srv.Close)
	var outputs []string
	run := func(stdin string, args ...string) (string, int) {
		out, code := cliWithStdin(t, srv.URL, stdin, args...)
		outputs = append(outputs, out)
		return out, code
	}
	want := func(name, value string) {
		t.Helper()
		if got, ok, err := vault.Get(t.Context(), "shop", name); err != nil || !ok || got != value {
			t.Fatalf("stored %s = %q, %v, %v; want %q", name, got, ok, err, value)
		}
	}

	if out, code := run("cli-value-one\n", "secrets", "set", "shop", "API_KEY"); code != 0 || !strings.Contains(out, "set secret API_KEY of project shop") {
		t.Fatalf("set: %d %s", code, out)
	}
	want("API_KEY", "cli-value-one")
	if out, code := run("cli-value-two\n\n", "secrets", "set", "shop", "TWO_LINES"); code != 0 {
		t.Fatalf("set: %d %s", code, out)
	}
	want("TWO_LINES", "cli-value-two\n")
	file := filepath.Join(t.TempDir(), "value.pem")
	if err := os.WriteFile(file, []byte("cli-value-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := run("", "secrets", "set", "shop", "FROM_FILE", "--from-file", file); code != 0 {
		t.Fatalf("set --from-file: %d %s", code, out)
	}
	want("FROM_FILE", "cli-value-file\n")

	out, code := run("", "secrets", "list", "shop")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || strings.Fields(lines[0])[0] != "NAME" || strings.Fields(lines[0])[1] != "UPDATED" ||
		!strings.HasPrefix(lines[1], "API_KEY ") || !strings.HasPrefix(lines[2], "FROM_FILE ") || !strings.HasPrefix(lines[3], "TWO_LINES ") {
		t.Fatalf("list: %d\n%s", code, out)
	}
	out, code = run("", "secrets", "list", "shop", "-o", "json")
	var list struct {
		Secrets []store.SecretInfo `json:"secrets"`
	}
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil || len(list.Secrets) != 3 || list.Secrets[0].Name != "API_KEY" || list.Secrets[0].UpdatedAt.IsZero() {
		t.Fatalf("list -o json: %d %v\n%s", code, err, out)
	}

	if out, code := run("", "secrets", "rm", "shop", "API_KEY"); code != 0 || !strings.Contains(out, "removed secret API_KEY of project shop") {
		t.Fatalf("rm: %d %s", code, out)
	}
	if _, ok, _ := vault.Get(t.Context(), "shop", "API_KEY"); ok {
		t.Fatal("rm left the secret")
	}
	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"", []string{"secrets", "rm", "shop", "API_KEY"}, `no secret "API_KEY" in project "shop" (404 not_found)`},
		{"v", []string{"secrets", "set", "shop", "BAD-NAME"}, "(400 invalid_secret)"},
		{"\n", []string{"secrets", "set", "shop", "EMPTY"}, "secret value is empty"},
		{"v", []string{"secrets", "set", "Shop", "KEY"}, "(400 invalid_project_name)"},
		{"", []string{"secrets", "list", "shop", "-o", "yaml"}, `unknown output "yaml"`},
		{"", []string{"secrets", "set", "shop"}, "accepts 2 arg(s)"},
		{"", []string{"secrets", "show", "shop"}, `unknown secrets command "show" (set, list, rm)`},
	} {
		if out, code := run(tc.stdin, tc.args...); code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%v: %d %s; want a failure saying %q", tc.args, code, out, tc.want)
		}
	}
	for _, out := range outputs {
		if strings.Contains(out, "cli-value") {
			t.Fatalf("an output shows a value:\n%s", out)
		}
	}
}
