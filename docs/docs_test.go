package docs_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// root is the repository, seen from this package's directory.
const root = ".."

// pages returns README.md and every Markdown page of docs/.
func pages(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) == 0 {
		t.Fatal("no Markdown page in docs/")
	}
	return append([]string{filepath.Join(root, "README.md")}, docs...)
}

var (
	fenced     = regexp.MustCompile("(?ms)^\\s*```.*?^\\s*```")
	inlineCode = regexp.MustCompile("`[^`\n]*`")
	inlineLink = regexp.MustCompile(`\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	refLink    = regexp.MustCompile(`(?m)^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)`)
)

// links returns the link targets of a Markdown text, code left aside (a
// link in a code block or span is no link).
func links(md []byte) []string {
	text := fenced.ReplaceAll(md, nil)
	text = inlineCode.ReplaceAll(text, nil)
	var out []string
	for _, re := range []*regexp.Regexp{inlineLink, refLink} {
		for _, m := range re.FindAllSubmatch(text, -1) {
			out = append(out, string(m[1]))
		}
	}
	return out
}

// TestLinksPointIntoTheRepository: every relative link of README.md and
// docs/*.md names a file or folder of the repository (anchors are not
// checked), and none leaves the repository. Links with a scheme (https:)
// are not followed.
func TestLinksPointIntoTheRepository(t *testing.T) {
	absRoot, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, page := range pages(t) {
		md, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, target := range links(md) {
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") || strings.HasPrefix(target, "#") {
				continue
			}
			p, _, _ := strings.Cut(target, "#")
			p, _, _ = strings.Cut(p, "?")
			if u, err := url.PathUnescape(p); err == nil {
				p = u
			}
			abs, err := filepath.Abs(filepath.Join(filepath.Dir(page), filepath.FromSlash(p)))
			if err != nil {
				t.Fatal(err)
			}
			rel, err := filepath.Rel(absRoot, abs)
			if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				t.Errorf("%s: link %q points outside the repository", page, target)
				continue
			}
			if _, err := os.Stat(abs); err != nil {
				t.Errorf("%s: link %q names %s, which is not in the repository", page, target, filepath.ToSlash(rel))
			}
		}
	}
}

// TestLinkCheckerFindsLinks guards the checker itself: it sees inline and
// reference links, and none inside code.
func TestLinkCheckerFindsLinks(t *testing.T) {
	md := "See [a](docs/a.md#x) and [b][1].\n\n[1]: ../b.md\n\n`[c](c.md)`\n\n```\n[d](d.md)\n```\n"
	got := links([]byte(md))
	want := []string{"docs/a.md#x", "../b.md"}
	if !slices.Equal(got, want) {
		t.Fatalf("links = %q, want %q", got, want)
	}
}

// outsidePointers are the names of what lies outside the repository: the
// design notes and the shared folder the project was started from. They
// are built so that this file does not contain them itself.
var outsidePointers = []string{"DESIGN" + ".md", "DESIGN" + "'s", "../" + "shared", "seeds" + "/"}

// TestNothingPointsOutsideTheRepository: no page, code comment, example or
// build file refers a reader to a file that a clone does not have.
func TestNothingPointsOutsideTheRepository(t *testing.T) {
	self, err := filepath.Abs("docs_test.go")
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") && name != ".ci" || name == "node_modules" || name == "testdata" || name == "bin" || name == "data") {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(name) {
		case ".go", ".md", ".yaml", ".yml", ".js", ".ts", ".json", ".sh":
		default:
			if name != "Makefile" && name != "Dockerfile" && filepath.Base(filepath.Dir(path)) != ".ci" {
				return nil
			}
		}
		if abs, _ := filepath.Abs(path); abs == self {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, p := range outsidePointers {
			if i := bytes.Index(data, []byte(p)); i >= 0 {
				line := bytes.Count(data[:i], []byte("\n")) + 1
				t.Errorf("%s:%d refers to %q, which is not in the repository: say it here instead", filepath.ToSlash(path), line, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// envName is a configuration variable as a deployment example writes it.
var envName = regexp.MustCompile(`OPSRUNNER_[A-Z0-9_]+`)

// documentedVariables returns the OPSRUNNER_* names of the rows of
// configuration.md's tables.
func documentedVariables(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile("configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "|") {
			for _, m := range envName.FindAllString(line, -1) {
				vars[m] = true
			}
		}
	}
	if len(vars) == 0 {
		t.Fatal("configuration.md lists no OPSRUNNER_* variable")
	}
	return vars
}

// readDocs parses every YAML document of a file.
func readDocs(t *testing.T, path string) []*yaml.Node {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs []*yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, &n)
	}
}

// scalars calls fn with every scalar (keys and values) under n.
func scalars(n *yaml.Node, fn func(*yaml.Node)) {
	if n.Kind == yaml.ScalarNode {
		fn(n)
	}
	for _, c := range n.Content {
		scalars(c, fn)
	}
}

// deployFiles are the deployment examples: the compose file and the
// Kubernetes manifests.
func deployFiles(t *testing.T) []string {
	t.Helper()
	k8s, err := filepath.Glob(filepath.Join(root, "deploy", "kubernetes", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(k8s) == 0 {
		t.Fatal("no Kubernetes manifest under deploy/kubernetes")
	}
	return append([]string{filepath.Join(root, "deploy", "compose.yaml")}, k8s...)
}

// TestDeployExamplesUseDocumentedVariables: the compose file and the
// Kubernetes manifests parse as YAML (every document), and every
// OPSRUNNER_* name they use is one the configuration reference lists, so
// a renamed or invented variable fails here rather than in a deployment.
func TestDeployExamplesUseDocumentedVariables(t *testing.T) {
	known := documentedVariables(t)
	for _, path := range deployFiles(t) {
		used := 0
		for _, doc := range readDocs(t, path) {
			scalars(doc, func(n *yaml.Node) {
				for _, name := range envName.FindAllString(n.Value, -1) {
					used++
					if !known[name] {
						t.Errorf("%s:%d: %s is not a configuration variable of docs/configuration.md", path, n.Line, name)
					}
				}
			})
		}
		if strings.HasSuffix(path, "compose.yaml") && used == 0 {
			t.Errorf("%s configures no agent through OPSRUNNER_* variables", path)
		}
	}
}

// TestDeployExamplesHaveTheirParts: the compose file runs Redis with
// append-only persistence, a STOMP broker and three agents with /readyz
// health checks; the Kubernetes manifests hold a Deployment whose
// readiness is /readyz, a PodDisruptionBudget, Redis, a broker, a
// ConfigMap, a Secret and a Service.
func TestDeployExamplesHaveTheirParts(t *testing.T) {
	var compose struct {
		Services map[string]struct {
			Command     any            `yaml:"command"`
			Environment map[string]any `yaml:"environment"`
			Healthcheck struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
	}
	data, err := os.ReadFile(filepath.Join(root, "deploy", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &compose); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	agents := 0
	for name, s := range compose.Services {
		if _, ok := s.Environment["OPSRUNNER_REDIS_URL"]; ok {
			agents++
			if !strings.Contains(strings.Join(s.Healthcheck.Test, " "), "/readyz") {
				t.Errorf("compose.yaml: agent %s has no /readyz health check", name)
			}
		}
	}
	if agents != 3 {
		t.Errorf("compose.yaml has %d agents, want 3", agents)
	}
	if cmd := fmt.Sprint(compose.Services["redis"].Command); !strings.Contains(cmd, "--appendonly yes") {
		t.Errorf("compose.yaml: redis runs %q, without --appendonly yes", cmd)
	}
	if _, ok := compose.Services["rabbitmq"]; !ok {
		t.Error("compose.yaml has no rabbitmq service")
	}

	kinds := map[string]int{}
	readyz := false
	for _, path := range deployFiles(t)[1:] {
		for _, doc := range readDocs(t, path) {
			var obj struct {
				Kind     string `yaml:"kind"`
				Metadata struct {
					Name string `yaml:"name"`
				} `yaml:"metadata"`
			}
			if err := doc.Decode(&obj); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			kinds[obj.Kind]++
			if obj.Kind == "Deployment" {
				scalars(doc, func(n *yaml.Node) { readyz = readyz || n.Value == "/readyz" })
			}
			if obj.Kind == "StatefulSet" {
				kinds["StatefulSet/"+obj.Metadata.Name]++
			}
		}
	}
	for _, k := range []string{"Deployment", "PodDisruptionBudget", "ConfigMap", "Secret", "Service", "StatefulSet/redis", "StatefulSet/rabbitmq"} {
		if kinds[k] == 0 {
			t.Errorf("deploy/kubernetes has no %s", k)
		}
	}
	if !readyz {
		t.Error("deploy/kubernetes: the Deployment's readiness is not /readyz")
	}
}
