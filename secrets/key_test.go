package secrets_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/opsrunner/opsrunner/secrets"
)

// A configured key is the base64 of 32 bytes; anything else is an error
// that says what is wrong without showing the text.
func TestLoadKeyConfigured(t *testing.T) {
	t.Parallel()
	key := bytes.Repeat([]byte{0xfb}, 32) // encodes with "+" and "/", or "-" and "_"
	for _, text := range []string{
		base64.StdEncoding.EncodeToString(key),
		" " + base64.StdEncoding.EncodeToString(key) + "\n",
		base64.RawStdEncoding.EncodeToString(key),
		base64.URLEncoding.EncodeToString(key),
	} {
		got, src, err := secrets.ResolveKey(text, t.TempDir())
		if err != nil || !bytes.Equal(got, key) || src != secrets.KeyConfigured {
			t.Errorf("ResolveKey(%q) = %x, %s, %v", text, got, src, err)
		}
	}
	for _, tc := range []struct{ text, want string }{
		{"not base64 at all!", "secrets_key: not base64"},
		{base64.StdEncoding.EncodeToString(key[:16]), "secrets_key: decodes to 16 bytes, want 32"},
		{base64.StdEncoding.EncodeToString(append(key, 1)), "secrets_key: decodes to 33 bytes, want 32"},
	} {
		dir := t.TempDir()
		_, err := secrets.LoadKey(tc.text, dir)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "openssl rand -base64 32") || strings.Contains(err.Error(), tc.text) {
			t.Errorf("LoadKey(%q): err = %v; want %q, a hint, and not the text", tc.text, err, tc.want)
		}
		if _, err := os.Stat(filepath.Join(dir, secrets.KeyFile)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("a bad configured key made a key file: %v", err)
		}
	}
}

// Without a configured key, the first start generates the key file (mode
// 0600) and later starts use it.
func TestLoadKeyGeneratesThenReusesFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, src, err := secrets.ResolveKey("", dir)
	if err != nil || len(first) != secrets.KeySize || src != secrets.KeyGenerated {
		t.Fatalf("first start: %d bytes, %s, %v", len(first), src, err)
	}
	path := filepath.Join(dir, secrets.KeyFile)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode(); mode != 0o600 {
		t.Fatalf("key file mode %v, want -rw-------", mode)
	}
	text, _ := os.ReadFile(path)
	if got, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(text))); err != nil || !bytes.Equal(got, first) {
		t.Fatalf("key file holds %q, not the key's base64", text)
	}
	again, src, err := secrets.ResolveKey("", dir)
	if err != nil || !bytes.Equal(again, first) || src != secrets.KeyFromFile {
		t.Fatalf("restart: %x (%s), %v; want the first key from the file", again, src, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("data dir holds %d entries, want the key file alone", len(entries))
	}
	other, err := secrets.LoadKey("", t.TempDir())
	if err != nil || bytes.Equal(other, first) {
		t.Fatalf("another data dir: %x, %v; want another key", other, err)
	}
}

// Starts racing on an empty data dir all end up with one key.
func TestLoadKeyRacingStartsAgree(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keys := make([][]byte, 8)
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() { keys[i], errs[i] = secrets.LoadKey("", dir) })
	}
	wg.Wait()
	for i := range keys {
		if errs[i] != nil || !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("start %d: %x, %v; start 0: %x", i, keys[i], errs[i], keys[0])
		}
	}
}

// A key file that does not hold a key is an error naming the file; it is
// never replaced (that would lose every secret sealed under it).
func TestLoadKeyBadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, secrets.KeyFile)
	if err := os.WriteFile(path, []byte("c2hvcnQ=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := secrets.LoadKey("", dir)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "decodes to 5 bytes, want 32") {
		t.Fatalf("err = %v; want one naming %s and the size", err, path)
	}
	if text, _ := os.ReadFile(path); string(text) != "c2hvcnQ=\n" {
		t.Fatalf("the bad key file was changed: %q", text)
	}
	if _, err := secrets.LoadKey("", filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a data dir that does not exist: no error")
	}
}

// NewVault takes a 32-byte key and a storage.
func TestNewVaultChecksItsArguments(t *testing.T) {
	t.Parallel()
	st := openBolt(t, filepath.Join(t.TempDir(), "opsrunner.db"))
	if _, err := secrets.NewVault(make([]byte, 16), st); err == nil || !strings.Contains(err.Error(), "16 bytes, want 32") {
		t.Errorf("16-byte key: %v", err)
	}
	if _, err := secrets.NewVault(randomKey(), nil); err == nil {
		t.Error("nil storage: no error")
	}
}
