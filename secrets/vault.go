// Package secrets keeps project secrets encrypted at rest: it seals each
// value with AES-GCM under the agent's key before a store sees it, opens it
// again on the way out, and checks secret names and values. It also loads
// (or generates) that key.
package secrets

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// Storage is where a Vault keeps sealed secrets; store.Bolt and
// store.Redis implement it (see store.SecretStore for the contract).
type Storage interface {
	PutSecret(ctx context.Context, project, name string, sealed []byte, updatedAt time.Time) error
	Secret(ctx context.Context, project, name string) (sealed []byte, updatedAt time.Time, err error)
	Secrets(ctx context.Context, project string) ([]store.SecretInfo, error)
	DeleteSecret(ctx context.Context, project, name string) error
}

// Vault reads and writes a Storage's secrets in plain text, sealing and
// opening them with one key. Safe for concurrent use; it holds no state
// but the key, and caches nothing: a change made through any vault over
// the same storage is seen at once. Create it with NewVault.
type Vault struct {
	sealer sealer
	st     Storage
}

// NewVault returns a vault over st that seals with key (KeySize bytes, as
// LoadKey returns it).
func NewVault(key []byte, st Storage) (*Vault, error) {
	if st == nil {
		return nil, errors.New("new secrets vault: nil storage")
	}
	s, err := newSealer(key)
	if err != nil {
		return nil, fmt.Errorf("new secrets vault: %w", err)
	}
	return &Vault{sealer: s, st: st}, nil
}

// Set seals value and stores it as project's secret name, replacing any
// earlier value. A bad project name, secret name or value is an error
// matching ErrInvalid that says which rule it breaks. The project need not
// be deployed. It blocks until the secret is stored.
func (v *Vault) Set(ctx context.Context, project, name string, value []byte) error {
	if err := checkProject(project); err != nil {
		return err
	}
	if err := CheckName(name); err != nil {
		return err
	}
	if err := CheckValue(value); err != nil {
		return err
	}
	sealed := v.sealer.seal(project, name, value)
	if err := v.st.PutSecret(ctx, project, name, sealed, time.Now().UTC()); err != nil {
		return fmt.Errorf("set secret: %w", err)
	}
	return nil
}

// Get returns project's secret name in plain text; ok is false when it is
// not set (a name the rules refuse is never set). A value this vault
// cannot open is an error: sealed under another key (wrapping ErrWrongKey)
// or damaged (wrapping ErrDamaged). The error never holds the value.
func (v *Vault) Get(ctx context.Context, project, name string) (value string, ok bool, err error) {
	if CheckName(name) != nil || checkProject(project) != nil {
		return "", false, nil
	}
	sealed, _, err := v.st.Secret(ctx, project, name)
	if errors.Is(err, store.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("get secret: %w", err)
	}
	plain, err := v.sealer.open(project, name, sealed)
	if err != nil {
		return "", false, err
	}
	return string(plain), true, nil
}

// List returns the names of project's secrets and when each was set,
// sorted by name (never values; an empty list when there are none).
func (v *Vault) List(ctx context.Context, project string) ([]store.SecretInfo, error) {
	if err := checkProject(project); err != nil {
		return nil, err
	}
	list, err := v.st.Secrets(ctx, project)
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	if list == nil {
		list = []store.SecretInfo{}
	}
	return list, nil
}

// Delete deletes project's secret name; an error wrapping store.ErrNotFound
// when it is not set, ErrInvalid for a name the rules refuse.
func (v *Vault) Delete(ctx context.Context, project, name string) error {
	if err := checkProject(project); err != nil {
		return err
	}
	if err := CheckName(name); err != nil {
		return err
	}
	if err := v.st.DeleteSecret(ctx, project, name); err != nil {
		return fmt.Errorf("delete secret: %w", err)
	}
	return nil
}

// checkProject applies the project name rule (scripts.ValidProjectName).
func checkProject(project string) error {
	if err := scripts.ValidProjectName(project); err != nil {
		return &ruleError{msg: err.Error()}
	}
	return nil
}
