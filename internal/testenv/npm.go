package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// NPMInstall copies files (package.json, package-lock.json and whatever
// else the test runs) from the directory src into a temporary directory
// and runs npm ci there, returning that directory. Without node or npm,
// or the npm registry, the test is skipped (locally) or fails (CI=true),
// naming what (e.g. "typescript").
func NPMInstall(t testing.TB, what, src string, files ...string) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			Unavailable(t, tool, err)
		}
	}
	dir := t.TempDir()
	for _, name := range files {
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		Unavailable(t, "npm ci of "+what, fmt.Errorf("%w: %s", err, out))
	}
	return dir
}
