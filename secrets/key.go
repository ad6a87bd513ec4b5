package secrets

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the size of a secrets key in bytes (AES-256).
const KeySize = 32

// KeyFile is the name of the key file in the data dir.
const KeyFile = "secrets.key"

// KeySource says where ResolveKey found the key.
type KeySource string

// Where a key comes from.
const (
	// KeyConfigured: secrets_key / OPSRUNNER_SECRETS_KEY.
	KeyConfigured KeySource = "configured"
	// KeyFromFile: the key file in the data dir, made by an earlier start.
	KeyFromFile KeySource = "file"
	// KeyGenerated: the key file was made now. A cluster's agents each
	// generating their own cannot read each other's secrets: worth a warning.
	KeyGenerated KeySource = "generated"
)

// LoadKey returns the secrets key: configured (the base64 of KeySize bytes)
// when it is set, else the one in dataDir's key file, which it generates
// the first time (see ResolveKey). A bad value is an error saying what is
// wrong with it, never showing it.
func LoadKey(configured, dataDir string) ([]byte, error) {
	key, _, err := ResolveKey(configured, dataDir)
	return key, err
}

// ResolveKey is LoadKey that also says where the key came from. A key file
// is generated from crypto/rand, base64 with a newline, mode 0600; it is
// written in full under a temporary name and then linked into place, which
// fails when the file exists: of two starts racing, one makes the key and
// both use it. The data dir must exist.
func ResolveKey(configured, dataDir string) ([]byte, KeySource, error) {
	if configured != "" {
		key, err := ParseKey(configured)
		if err != nil {
			return nil, "", fmt.Errorf("secrets_key: %w", err)
		}
		return key, KeyConfigured, nil
	}
	path := filepath.Join(dataDir, KeyFile)
	key, err := readKeyFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, KeyFromFile, err
	}
	switch err := createKeyFile(path); {
	case errors.Is(err, fs.ErrExist):
		key, err := readKeyFile(path) // another start made it first
		return key, KeyFromFile, err
	case err != nil:
		return nil, "", err
	}
	key, err = readKeyFile(path)
	return key, KeyGenerated, err
}

// ParseKey decodes a key given as base64 (standard or URL alphabet, with
// or without padding; surrounding space ignored) and checks its size. Its
// errors never show the text.
func ParseKey(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	const howTo = "; make one with `openssl rand -base64 32`"
	key, err := base64.StdEncoding.DecodeString(text)
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if err == nil {
			break
		}
		if k, e := enc.DecodeString(text); e == nil {
			key, err = k, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("not base64 (%v)%s", err, howTo)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("decodes to %d bytes, want %d%s", len(key), KeySize, howTo)
	}
	return key, nil
}

func readKeyFile(path string) ([]byte, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read secrets key file: %w", err)
	}
	key, err := ParseKey(string(text))
	if err != nil {
		return nil, fmt.Errorf("secrets key file %s: %w", path, err)
	}
	return key, nil
}

// createKeyFile writes a new random key to path; an error wrapping
// fs.ErrExist when path exists.
func createKeyFile(path string) error {
	key := make([]byte, KeySize)
	rand.Read(key) // never fails (crypto/rand)
	text := base64.StdEncoding.EncodeToString(key) + "\n"

	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+KeyFile+"-*") // O_EXCL, mode 0600
	if err != nil {
		return fmt.Errorf("create secrets key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(text)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write secrets key file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("create secrets key file: %w", err)
	}
	// Without the directory's sync a crash could lose the new name, and
	// with it every secret sealed under the key.
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("sync data dir after creating the secrets key file: %w", err)
		}
	}
	return nil
}
