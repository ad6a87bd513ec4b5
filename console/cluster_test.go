package console_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/opsrunner/opsrunner/agent"
)

// With tokens configured the page loads, shows the API's 401 plainly and
// asks for a token; once given (kept in sessionStorage, no cookie) the
// Cluster page shows the agent, the leader and the quorum.
func TestTokenPromptAndClusterPage(t *testing.T) {
	ta := startAgent(t, func(c *agent.Config) { c.Tokens = []agent.Token{{Token: "s3cret", Scopes: []string{"admin"}}} })
	b := newBrowser(t)
	b.do("open Cluster without a token", chromedp.Navigate(ta.URL+"/console/cluster"),
		chromedp.WaitVisible(chromedp.CSS("#notice button")))
	if got := b.text("#notice"); !strings.Contains(got, "401") || !strings.Contains(got, "needs an API token") {
		t.Errorf("the notice reads %q, want the 401 and a token prompt", got)
	}
	b.screenshot("console-unauthorized")

	b.do("enter the token",
		chromedp.Click(chromedp.CSS("#notice button")),
		chromedp.WaitVisible(chromedp.CSS("#token-dialog #token-input")),
		chromedp.SendKeys(chromedp.CSS("#token-input"), "s3cret"),
		chromedp.Click(chromedp.CSS(`#token-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#members tr[data-agent="console-test"]`)))
	if got := b.text("#cluster-facts"); !strings.Contains(got, "console-test") || !strings.Contains(got, "ok") {
		t.Errorf("the cluster facts read %q, want the leader and the quorum", got)
	}
	if got := b.text("#cluster"); strings.Contains(got, "null") || strings.Contains(got, "undefined") {
		t.Errorf("the page shows a missing value as text: %q", got)
	}
	if got := b.text(`#members tr[data-agent="console-test"]`); !strings.Contains(got, "leader") || !strings.Contains(got, "workers") {
		t.Errorf("the member row reads %q", got)
	}
	if eval[string](b, `sessionStorage.getItem("opsrunner.token")`) != "s3cret" || eval[string](b, `document.cookie`) != "" {
		t.Error("the token is not kept in sessionStorage only")
	}
	if !eval[bool](b, `document.querySelector("#notice").hidden`) {
		t.Errorf("the 401 notice stays after the token is given: %q", b.text("#notice"))
	}
	b.screenshot("console-cluster")

	b.do("a wrong token is refused plainly",
		chromedp.Click(chromedp.CSS("#token-button")),
		chromedp.WaitVisible(chromedp.CSS("#token-input")),
		chromedp.SetValue(chromedp.CSS("#token-input"), "wrong"),
		chromedp.Click(chromedp.CSS(`#token-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS("#notice button")))
	if got := b.text("#notice"); !strings.Contains(got, "401") {
		t.Errorf("with a wrong token the notice reads %q", got)
	}
}
