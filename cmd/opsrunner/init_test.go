package main_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opsrunner/opsrunner/sdk"
)

func TestTypesPrintsTheDeclarations(t *testing.T) {
	out, code := cli(t, "http://127.0.0.1:1", "types")
	if code != 0 || out != sdk.Declarations() {
		t.Fatalf("types: exit %d, %d bytes; want the %d bytes of sdk/opsrunner.d.ts", code, len(out), len(sdk.Declarations()))
	}
}

func TestInitScaffoldsAProjectThatDeploysAndAnswers(t *testing.T) {
	url, _, logs := serve(t)
	dir := filepath.Join(t.TempDir(), "Greeter")

	out, code := cli(t, url, "init", dir)
	if code != 0 {
		t.Fatalf("init: exit %d: %s", code, out)
	}
	for _, want := range []string{"created project greeter", "opsrunner deploy " + dir, "opsrunner invoke greeter/hello",
		"curl -X POST localhost:8080/hooks/greeter/hello -H 'Content-Type: application/json'"} {
		if !strings.Contains(out, want) {
			t.Errorf("init's output lacks %q:\n%s", want, out)
		}
	}
	for _, name := range []string{"opsrunner.yaml", "operations/hello.js", "jsconfig.json", "opsrunner.d.ts"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("init wrote no %s: %v", name, err)
		}
	}
	var jsconfig struct {
		CompilerOptions struct{ CheckJs bool }
		Include         []string
	}
	data, _ := os.ReadFile(filepath.Join(dir, "jsconfig.json"))
	if err := json.Unmarshal(data, &jsconfig); err != nil || !jsconfig.CompilerOptions.CheckJs || !strings.Contains(strings.Join(jsconfig.Include, " "), "opsrunner.d.ts") {
		t.Errorf("jsconfig.json must have checkJs and include opsrunner.d.ts: %s", data)
	}

	out, code = cli(t, url, "deploy", dir)
	if code != 0 || !strings.Contains(out, "deployed greeter version 1") {
		t.Fatalf("deploy: exit %d: %s\n%s", code, out, logs)
	}
	// The curl line init prints, against this agent.
	resp, err := http.Post(url+"/hooks/greeter/hello", "application/json", strings.NewReader(`{"name": "Ada"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != `{"message":"hello, Ada"}` {
		t.Fatalf("webhook answered %d %s", resp.StatusCode, body)
	}
	out, code = cli(t, url, "invoke", "greeter/hello", "--data", `{"name": "Ada"}`)
	if code != 0 || !strings.Contains(out, "hello, Ada") {
		t.Fatalf("invoke: exit %d: %s", code, out)
	}
}

func TestInitRefusesAFolderThatIsNotEmptyUnlessForced(t *testing.T) {
	dir := t.TempDir()
	mine := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(mine, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := cli(t, "http://127.0.0.1:1", "init", dir, "--project", "shop")
	if code == 0 || !strings.Contains(out, "not empty") || !strings.Contains(out, "--force") {
		t.Fatalf("init into a folder with a file: exit %d: %s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "opsrunner.yaml")); err == nil {
		t.Fatal("a refused init wrote opsrunner.yaml")
	}
	out, code = cli(t, "http://127.0.0.1:1", "init", dir, "--project", "shop", "--force")
	if code != 0 {
		t.Fatalf("init --force: exit %d: %s", code, out)
	}
	manifest, _ := os.ReadFile(filepath.Join(dir, "opsrunner.yaml"))
	if !strings.Contains(string(manifest), "\nproject: shop\n") {
		t.Errorf("--project shop wrote:\n%s", manifest)
	}
	if data, err := os.ReadFile(mine); err != nil || string(data) != "mine" {
		t.Errorf("init --force changed a file of its own: %q %v", data, err)
	}
}

func TestInitRefusesAnInvalidProjectName(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	out, code := cli(t, "http://127.0.0.1:1", "init", dir, "--project", "Shop!")
	if code == 0 || !strings.Contains(out, "a project name is lowercase letters") || !strings.Contains(out, "--project") {
		t.Fatalf("init --project Shop!: exit %d: %s", code, out)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Error("a refused init made the folder")
	}
}
