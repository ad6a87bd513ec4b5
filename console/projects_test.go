package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cdpbrowser "github.com/chromedp/cdproto/browser"
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

	t.Run("delete asks for the project's name, then the project and its webhook are gone", func(t *testing.T) {
		b := b.in(t)
		b.do("open Projects", chromedp.Navigate(ta.URL+"/console/projects"), chromedp.WaitVisible(chromedp.CSS(project)))
		b.do("delete, then cancel", chromedp.Click(chromedp.CSS(project+" button.delete-project")),
			chromedp.WaitVisible(chromedp.CSS("dialog.confirm #confirm-typed")),
			chromedp.Click(chromedp.CSS("dialog.confirm button.secondary")),
			chromedp.WaitNotPresent(chromedp.CSS("dialog.confirm")))
		if got := ta.hello(t); got != "hello, Ada" {
			t.Fatalf("after a cancelled delete the webhook answers %q", got)
		}
		b.do("delete, and type another name", chromedp.Click(chromedp.CSS(project+" button.delete-project")),
			chromedp.WaitVisible(chromedp.CSS("dialog.confirm #confirm-typed")),
			chromedp.SendKeys(chromedp.CSS("#confirm-typed"), "hell"))
		if !eval[bool](b, `document.querySelector("dialog.confirm button.danger").disabled`) {
			t.Fatal("the Delete button is enabled before the project's name is typed")
		}
		b.do("finish the name and confirm", chromedp.SendKeys(chromedp.CSS("#confirm-typed"), "o"),
			chromedp.WaitEnabled(chromedp.CSS("dialog.confirm button.danger")))
		b.screenshot("console-project-delete")
		b.do("confirm", chromedp.Click(chromedp.CSS("dialog.confirm button.danger")))
		b.waitFor("the deletion to be reported", `document.querySelector("#projects-status").textContent.includes("Deleted hello")`)
		if eval[bool](b, `document.querySelector('`+project+`') !== null`) {
			t.Error("the deleted project is still listed")
		}
		if status, body := ta.do(t, http.MethodPost, "/hooks/hello/hello", "application/json", []byte(`{"name": "Ada"}`)); status != http.StatusNotFound {
			t.Errorf("after the delete the webhook answers %d %s, want 404", status, body)
		}
	})
}

// The Projects page lists the live version's operations with their
// triggers: a webhook's full URL with a button that copies it, and the
// listeners feeding each operation, linked to the Listeners page.
func TestProjectOperationsAndTheirTriggers(t *testing.T) {
	ta := startAgent(t, nil)
	ta.deploy(t, "jms-orders", sampleBundle(t, "jms-orders"))
	b := newBrowser(t)
	origin := strings.TrimPrefix(ta.URL, "http://")
	b.do("let the page use the clipboard",
		grantPermission(ta.URL, "clipboard-read"), grantPermission(ta.URL, "clipboard-write"),
		chromedp.Navigate(ta.URL+"/console/projects"))
	send := `article.project[data-project="jms-orders"] li[data-operation="Send Order"]`
	listen := `article.project[data-project="jms-orders"] li[data-operation="1. JMS Listen"]`
	b.do("open Projects", chromedp.WaitVisible(chromedp.CSS(send+" code.url")))

	want := "http://" + origin + "/hooks/jms-orders/send"
	if got := b.text(send + " code.url"); got != want {
		t.Errorf("Send Order's webhook URL reads %q, want %q", got, want)
	}
	if got := b.text(listen + " .trigger.listeners a"); got != "jms-orders/orders-in" {
		t.Errorf("1. JMS Listen's listeners read %q, want jms-orders/orders-in", got)
	}
	if got := b.text(listen); !strings.Contains(got, "time limit 20s") {
		t.Errorf("1. JMS Listen reads %q, want its time limit", got)
	}
	if n := eval[int](b, `document.querySelectorAll('article.project[data-project="jms-orders"] li[data-operation] code.url').length`); n != 1 {
		t.Errorf("%d operations show a webhook URL; only Send Order has one", n)
	}

	b.do("copy the URL", chromedp.Click(chromedp.CSS(send+" button.copy")))
	b.waitFor("the copy to be reported", `document.querySelector('`+send+` button.copy').dataset.state !== undefined`)
	state := eval[string](b, `document.querySelector('`+send+` button.copy').dataset.state`)
	if state != "copied" {
		t.Fatalf("the copy button says %q, want copied (the clipboard permission is granted)", state)
	}
	clip, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("read the clipboard: %v", err)
	}
	if clip != want {
		t.Errorf("the clipboard holds %q, want %q", clip, want)
	}
	if status, body := ta.do(t, http.MethodPost, strings.TrimPrefix(clip, ta.URL), "application/json", []byte(`{"id": "C-1", "qty": 1}`)); status != http.StatusAccepted {
		t.Errorf("POST to the copied URL: %d %s", status, body)
	}
	b.screenshot("console-project-operations")

	b.do("follow a listener link", chromedp.Click(chromedp.CSS(listen+" .trigger.listeners a")),
		chromedp.WaitVisible(chromedp.CSS(`li.listener[data-id="jms-orders/orders-in"]`)))
	if n := eval[int](b, `document.querySelectorAll("li.listener").length`); n != 1 {
		t.Errorf("the Listeners page opened from the link shows %d listeners, want orders-in only", n)
	}
}

// grantPermission lets pages of origin use a permission ("clipboard-read")
// without asking.
func grantPermission(origin, name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.CallBrowser(ctx, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
			Permission: &cdpbrowser.PermissionDescriptor{Name: name},
			Setting:    cdpbrowser.PermissionSettingGranted,
			Origin:     origin,
		})
		return err
	})
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
