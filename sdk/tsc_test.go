package sdk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/internal/testenv"
	"github.com/opsrunner/opsrunner/sdk"
)

// jsconfig is the part of a jsconfig.json these tests read.
type jsconfig struct {
	CompilerOptions json.RawMessage `json:"compilerOptions"`
	Include         []string        `json:"include,omitempty"`
	Files           []string        `json:"files,omitempty"`
}

// scaffoldConfig is the jsconfig.json of a project `opsrunner init` makes:
// the compiler options every check here uses.
func scaffoldConfig(t *testing.T) jsconfig {
	t.Helper()
	files, err := sdk.Scaffold("scaffolded")
	if err != nil {
		t.Fatal(err)
	}
	var c jsconfig
	if err := json.Unmarshal(files["jsconfig.json"], &c); err != nil {
		t.Fatalf("the scaffold's jsconfig.json: %v", err)
	}
	return c
}

// samples are the folders of ../samples.
func samples(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join("..", "samples", "*", "opsrunner.yaml"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no samples found: %v", err)
	}
	for i, d := range dirs {
		dirs[i] = filepath.Dir(d)
	}
	return dirs
}

func TestEverySampleIsCheckedAsAnInitProjectIs(t *testing.T) {
	want := scaffoldConfig(t)
	for _, dir := range samples(t) {
		data, err := os.ReadFile(filepath.Join(dir, "jsconfig.json"))
		if err != nil {
			t.Errorf("sample %s has no jsconfig.json: %v", dir, err)
			continue
		}
		var c jsconfig
		if err := json.Unmarshal(data, &c); err != nil {
			t.Errorf("%s/jsconfig.json: %v", dir, err)
			continue
		}
		if !jsonEqual(c.CompilerOptions, want.CompilerOptions) {
			t.Errorf("%s/jsconfig.json has compilerOptions %s, want the scaffold's %s", dir, c.CompilerOptions, want.CompilerOptions)
		}
		if !slices.Equal(c.Include, []string{"operations/**/*.js", "../../sdk/opsrunner.d.ts"}) {
			t.Errorf("%s/jsconfig.json includes %q, want its operations and ../../sdk/opsrunner.d.ts", dir, c.Include)
		}
	}
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xs, _ := json.Marshal(x)
	ys, _ := json.Marshal(y)
	return bytes.Equal(xs, ys)
}

// TestTypeScriptAcceptsTheSamplesAndTheScaffold runs tsc --noEmit (npm
// typescript, pinned in testdata/package-lock.json) over each sample's
// jsconfig.json, a freshly scaffolded project and the fixtures in
// testdata/typed (which use most of the API), and checks that it reports
// exactly the errors marked in testdata/mistyped.
func TestTypeScriptAcceptsTheSamplesAndTheScaffold(t *testing.T) {
	tsc := installTSC(t)
	for _, dir := range samples(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			if out, err := tsc.run(filepath.Join(dir, "jsconfig.json")); err != nil {
				t.Errorf("tsc -p %s/jsconfig.json: %v\n%s", dir, err, out)
			}
		})
	}
	t.Run("init", func(t *testing.T) {
		dir := t.TempDir()
		files, err := sdk.Scaffold("scaffolded")
		if err != nil {
			t.Fatal(err)
		}
		for name, data := range files {
			path := filepath.Join(dir, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if out, err := tsc.run(filepath.Join(dir, "jsconfig.json")); err != nil {
			t.Errorf("tsc over a scaffolded project: %v\n%s", err, out)
		}
	})
	t.Run("typed fixtures", func(t *testing.T) {
		if out, err := tsc.run(fixtureConfig(t, "typed")); err != nil {
			t.Errorf("tsc over testdata/typed: %v\n%s", err, out)
		}
	})
	t.Run("mistakes are reported", func(t *testing.T) {
		out, err := tsc.run(fixtureConfig(t, "mistyped"))
		if err == nil {
			t.Fatal("tsc accepted testdata/mistyped")
		}
		got := reported(out)
		want := wanted(t, filepath.Join("testdata", "mistyped", "mistakes.js"))
		if !slices.Equal(got, want) {
			t.Errorf("tsc reported %q, want %q; its output:\n%s", got, want, out)
		}
	})
}

// fixtureConfig writes a jsconfig.json over testdata/<dir>/*.js and the
// declarations, with the scaffold's compiler options, and returns its path.
func fixtureConfig(t *testing.T, dir string) string {
	t.Helper()
	c := scaffoldConfig(t)
	c.Include = nil
	js, _ := filepath.Glob(filepath.Join("testdata", dir, "*.js"))
	for _, name := range append(js, sdk.DeclarationsFile) {
		abs, err := filepath.Abs(name)
		if err != nil {
			t.Fatal(err)
		}
		c.Files = append(c.Files, abs)
	}
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jsconfig.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// reported lists "file:line TScode" for each error in tsc's output.
func reported(out string) []string {
	re := regexp.MustCompile(`(?m)^(?:.*/)?([^/(]+)\((\d+),\d+\): error (TS\d+)`)
	var got []string
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		got = append(got, fmt.Sprintf("%s:%s %s", m[1], m[2], m[3]))
	}
	return got
}

// wanted lists "file:line TScode" for each line of file marked "// want TScode".
func wanted(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i, line := range strings.Split(string(data), "\n") {
		if _, code, ok := strings.Cut(line, "// want "); ok {
			want = append(want, fmt.Sprintf("%s:%d %s", filepath.Base(file), i+1, strings.TrimSpace(code)))
		}
	}
	if len(want) == 0 {
		t.Fatalf("%s marks no mistake", file)
	}
	return want
}

// tscInstall is a TypeScript compiler installed by npm ci.
type tscInstall struct{ script string }

// run type-checks the project of a jsconfig.json; err is set when tsc
// exits non-zero (a type error, or a broken configuration).
func (c tscInstall) run(config string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "node", c.script, "--noEmit", "--pretty", "false", "-p", config).CombinedOutput()
	return string(out), err
}

// installTSC installs testdata's pinned typescript with npm ci (see
// testenv.NPMInstall).
func installTSC(t *testing.T) tscInstall {
	dir := testenv.NPMInstall(t, "typescript", "testdata", "package.json", "package-lock.json")
	return tscInstall{script: filepath.Join(dir, "node_modules", "typescript", "bin", "tsc")}
}
