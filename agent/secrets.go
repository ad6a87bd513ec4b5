package agent

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/opsrunner/opsrunner/secrets"
	"github.com/opsrunner/opsrunner/store"
)

// openVault returns the vault of the agent's project secrets over st,
// sealing with secrets_key or the data dir's key file (generated on the
// first start). It warns when a generated or per-agent key file is what a
// cluster agent uses: agents with different keys cannot read each other's
// secrets.
func openVault(cfg Config, st store.Store, log *slog.Logger) (*secrets.Vault, error) {
	key, source, err := secrets.ResolveKey(cfg.SecretsKey, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	file := filepath.Join(cfg.DataDir, secrets.KeyFile)
	switch {
	case source == secrets.KeyGenerated && cfg.RedisURL != "":
		log.Warn("no secrets_key: generated a secrets key file for this agent alone; every agent of a cluster needs the same secrets_key (OPSRUNNER_SECRETS_KEY), or none can read the secrets another set", "file", file)
	case source == secrets.KeyGenerated:
		log.Warn("no secrets_key: generated a secrets key file; keep it with the data dir, project secrets cannot be read without it", "file", file)
	case source == secrets.KeyFromFile && cfg.RedisURL != "":
		log.Warn("no secrets_key: this cluster agent seals secrets with its own key file; every agent of a cluster needs the same secrets_key (OPSRUNNER_SECRETS_KEY)", "file", file)
	}
	v, err := secrets.NewVault(key, st)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	return v, nil
}

// PutSecret implements api.Backend: it seals value and stores it as the
// project's secret name (the project need not be deployed). Runs read the
// new value from their next access on, on every agent: no redeploy.
func (a *Agent) PutSecret(ctx context.Context, project, name string, value []byte) error {
	return a.vault.Set(ctx, project, name, value)
}

// Secrets implements api.Backend: the project's secret names and update
// times, sorted by name.
func (a *Agent) Secrets(ctx context.Context, project string) ([]store.SecretInfo, error) {
	return a.vault.List(ctx, project)
}

// DeleteSecret implements api.Backend; an error wrapping store.ErrNotFound
// when the secret is not set.
func (a *Agent) DeleteSecret(ctx context.Context, project, name string) error {
	return a.vault.Delete(ctx, project, name)
}

// Secret implements runtime.Secrets (the lead wires it into the engine)
// and api.Backend: a project's secret in plain text; ok is false when it
// is not set. It reads the store each time (nothing is cached), so a
// change made on any agent is seen at once. Goroutine-safe.
func (a *Agent) Secret(ctx context.Context, project, name string) (value string, ok bool, err error) {
	return a.vault.Get(ctx, project, name)
}
