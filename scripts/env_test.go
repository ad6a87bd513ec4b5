package scripts

import (
	"strings"
	"testing"
)

func TestManifestEnvIsReadAsStrings(t *testing.T) {
	files := map[string][]byte{
		ManifestFile: []byte("project: shop\nenv:\n  API_BASE: https://api.example.com\n  RETRIES: 3\n  DEBUG: true\noperations:\n  - name: a\n    script: a.js\n"),
		"a.js":       []byte("function handle() { return env.API_BASE }"),
	}
	p, err := Load("", 1, files, LoadOptions{})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	want := map[string]string{"API_BASE": "https://api.example.com", "RETRIES": "3", "DEBUG": "true"}
	for k, v := range want {
		if p.Manifest.Env[k] != v {
			t.Errorf("env %s = %q, want %q", k, p.Manifest.Env[k], v)
		}
	}
}

func TestManifestEnvNamesAreChecked(t *testing.T) {
	files := map[string][]byte{
		ManifestFile: []byte("project: shop\nenv:\n  \"API-BASE\": x\noperations:\n  - name: a\n    script: a.js\n"),
		"a.js":       []byte("function handle() {}"),
	}
	_, err := Load("", 1, files, LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), `opsrunner.yaml:3:3`) || !strings.Contains(err.Error(), `env name "API-BASE"`) {
		t.Fatalf("err %v, want the bad env name with its position", err)
	}
}
