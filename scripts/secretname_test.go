package scripts_test

import (
	"strings"
	"testing"

	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/secrets"
)

// A webhook's tokenSecret is accepted exactly when secrets.CheckName
// accepts the name: the manifest cannot name a secret that cannot be set.
func TestTokenSecretFollowsTheSecretNameRule(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"A", "_x", "HOOK_TOKEN", "a1", strings.Repeat("a", 128), strings.Repeat("a", 129), "1a", "a-b", "a.b", "é", "a b"} {
		files := map[string][]byte{
			scripts.ManifestFile: []byte("project: p\noperations:\n  - name: A\n    script: a.js\n    webhook: {tokenSecret: \"" + name + "\"}\n"),
			"a.js":               []byte("function handle() {}"),
		}
		_, err := scripts.Load("p", 1, files, scripts.LoadOptions{})
		if want := secrets.CheckName(name) == nil; (err == nil) != want {
			t.Errorf("tokenSecret %q: Load error %v, but CheckName accepts it: %v", name, err, want)
		}
	}
}
