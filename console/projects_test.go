package console_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// hello answers what the hello webhook says to Ada.
func (ta *testAgent) hello(t *testing.T) string {
	t.Helper()
	status, body := ta.do(t, http.MethodPost, "/hooks/hello/hello", "application/json", []byte(`{"name": "Ada"}`))
	if status != http.StatusOK {
		t.Fatalf("webhook: %d %s", status, body)
	}
	var res struct{ Message string }
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatalf("webhook answer %s: %v", body, err)
	}
	return res.Message
}

const helloManifest = "project: hello\noperations:\n  - name: hello\n    script: operations/hello.js\n    webhook:\n      path: hello\n"

// The Projects page: a confirmed rollback changes what the webhook
// answers, and a deploy that fails shows where, as file:line:col.
func TestProjectsPage(t *testing.T) {
	ta := startAgent(t, nil)
	ta.deploy(t, "hello", sampleBundle(t, "hello"))
	ta.deploy(t, "hello", bundle(t, map[string]string{
		"opsrunner.yaml":      helloManifest,
		"operations/hello.js": `function handle(event) { return { message: "hi, " + event.body.name }; }`,
	}))
	if got := ta.hello(t); got != "hi, Ada" {
		t.Fatalf("version 2 answers %q", got)
	}
	b := newBrowser(t)
	project := `article.project[data-project="hello"]`
	b.do("open Projects", chromedp.Navigate(ta.URL+"/console/projects"), chromedp.WaitVisible(chromedp.CSS(project)))

	t.Run("rollback asks, then makes the old version live", func(t *testing.T) {
		b := b.in(t)
		b.do("roll back to version 1", chromedp.Click(chromedp.CSS(project+` tr[data-version="1"] button.rollback`)),
			chromedp.WaitVisible(chromedp.CSS("dialog.confirm")),
			chromedp.Click(chromedp.CSS("dialog.confirm button.danger")))
		b.waitFor("the rollback to be reported", `document.querySelector("#projects-status").textContent.includes("back to version 1")`)
		if got := ta.hello(t); got != "hello, Ada" {
			t.Errorf("after the rollback the webhook answers %q, want version 1's %q", got, "hello, Ada")
		}
		b.waitFor("version 1 shown live", `document.querySelector('`+project+` tr[data-version="1"] .live') !== null`)
		if !eval[bool](b, `document.querySelector('`+project+` tr[data-version="2"] button.rollback') !== null`) {
			t.Error("version 2 offers no way back")
		}
		b.screenshot("console-projects")
	})

	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		files map[string]string
	}{
		{"a script that does not compile", map[string]string{
			"opsrunner.yaml":      helloManifest,
			"operations/hello.js": "function handle(event) {\n  return { message: ;\n}\n",
		}},
		{"a manifest with an unknown key", map[string]string{
			"opsrunner.yaml":      helloManifest + "colour: blue\n",
			"operations/hello.js": "function handle(event) { return 1; }\n",
		}},
	} {
		t.Run("a deploy error shows file:line:col: "+tc.name, func(t *testing.T) {
			b := b.in(t)
			data := bundle(t, tc.files)
			want := apiProblem(t, ta, data)
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".tgz")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			b.do("upload "+tc.name,
				chromedp.Evaluate[chromedp.Void](`document.querySelector("#deploy-result").replaceChildren()`),
				chromedp.SetValue(chromedp.CSS("#deploy-name"), "hello"),
				chromedp.SetUploadFiles(chromedp.CSS("#deploy-file"), []string{path}),
				chromedp.Click(chromedp.CSS(`#deploy-form button[type=submit]`)),
				chromedp.WaitVisible(chromedp.CSS("#deploy-result .problems code.loc")))
			if got := b.text("#deploy-result .problems code.loc"); got != want {
				t.Errorf("the page shows the problem at %q, the API at %q", got, want)
			}
		})
	}
	b.screenshot("console-deploy-error")
	if got := ta.hello(t); got != "hello, Ada" {
		t.Errorf("after failed deploys the webhook answers %q", got)
	}
}

// apiProblem deploys a bad bundle through the API and returns where the
// first problem is, as file:line:col.
func apiProblem(t *testing.T, ta *testAgent, data []byte) string {
	t.Helper()
	status, body := ta.do(t, http.MethodPut, "/api/v1/projects/hello", "application/gzip", data)
	if status != http.StatusBadRequest {
		t.Fatalf("bad bundle: %d %s, want 400", status, body)
	}
	var res struct {
		Error struct {
			Details []struct {
				File         string
				Line, Column int
			}
		}
	}
	if err := json.Unmarshal(body, &res); err != nil || len(res.Error.Details) == 0 || res.Error.Details[0].Line == 0 {
		t.Fatalf("bad bundle answer has no located problem: %s", body)
	}
	d := res.Error.Details[0]
	return fmt.Sprintf("%s:%d:%d", d.File, d.Line, d.Column)
}
