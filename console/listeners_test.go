package console_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// listenerState is what the API reports of one listener.
type listenerState struct {
	ID         string `json:"id"`
	Enabled    bool   `json:"enabled"`
	Status     string `json:"status"`
	Operations []struct {
		Name    string `json:"name"`
		Enabled bool   `json:"enabled"`
	} `json:"operations"`
}

func (ta *testAgent) listener(t *testing.T, id string) listenerState {
	t.Helper()
	var res struct {
		Listeners []listenerState `json:"listeners"`
	}
	ta.getJSON(t, "/api/v1/listeners", &res)
	for _, l := range res.Listeners {
		if l.ID == id {
			return l
		}
	}
	t.Fatalf("the API lists no listener %s", id)
	return listenerState{}
}

// search types q into the search box, as a user would, after clearing it.
func (b *browser) search(q string) {
	b.t.Helper()
	b.do("clear the search box", chromedp.Evaluate[chromedp.Void](
		`(() => { const s = document.querySelector("#listener-search"); s.value = ""; s.dispatchEvent(new Event("input")); })()`))
	if q != "" {
		b.do("type "+q, chromedp.SendKeys(chromedp.CSS("#listener-search"), q))
	}
}

// shownListeners lists the ids of the listeners the page shows.
func (b *browser) shownListeners() string {
	b.t.Helper()
	return eval[string](b, `[...document.querySelectorAll("li.listener")].map((l) => l.dataset.id).join(",")`)
}

const (
	ordersIn = `li.listener[data-id="jms-orders/orders-in"]`
	ordersV3 = `li.listener[data-id="jms-orders/orders-v3"]`
)

// The seed's Listeners tab, point by point: search (any part of listener,
// operation or status, not case-sensitive), refresh, disclosure of the
// operations, and On/Off switches with the cascade.
func TestListenersPage(t *testing.T) {
	ta := startAgent(t, nil)
	ta.deploy(t, "jms-orders", sampleBundle(t, "jms-orders"))
	b := newBrowser(t)

	b.do("open the console at /",
		chromedp.Navigate(ta.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(ordersIn)),
		chromedp.WaitVisible(chromedp.CSS(ordersV3)))
	if got := b.text(ordersIn + " .facts"); !strings.Contains(got, "/queue/orders") || !strings.Contains(got, "default") {
		t.Errorf("orders-in shows %q, want its destination and connection", got)
	}
	if got := b.text(ordersIn + " .note"); !strings.Contains(got, "leaves its operations as they are") {
		t.Errorf("the note next to the listener switch says %q", got)
	}

	if n := eval[int](b, `document.querySelectorAll("button[role=switch]:not([aria-label]), button[role=switch]:not([aria-checked])").length`); n != 0 {
		t.Errorf("%d On/Off switches lack an aria-label or aria-checked", n)
	}

	t.Run("search by operation name, not case-sensitive", func(t *testing.T) {
		b := b.in(t)
		b.search("CUSTOMER logic")
		b.waitFor("one listener shown", `document.querySelectorAll("li.listener").length === 1`)
		if got := b.shownListeners(); got != "jms-orders/orders-v3" {
			t.Errorf("searching CUSTOMER logic shows %q, want orders-v3", got)
		}
		b.search("jms listen")
		b.waitFor("one listener shown", `document.querySelector("li.listener") && document.querySelectorAll("li.listener").length === 1`)
		if got := b.shownListeners(); got != "jms-orders/orders-in" {
			t.Errorf("searching jms listen shows %q, want orders-in", got)
		}
		b.search("")
		b.waitFor("both listeners shown", `document.querySelectorAll("li.listener").length === 2`)
	})

	t.Run("the disclosure triangle reveals the operations", func(t *testing.T) {
		b := b.in(t)
		if eval[bool](b, `document.querySelector('`+ordersIn+` ul.operations').hidden === false`) {
			t.Fatal("operations shown before the triangle is clicked")
		}
		b.do("open orders-in", chromedp.Click(chromedp.CSS(ordersIn+" button.disclosure")),
			chromedp.WaitVisible(chromedp.CSS(ordersIn+` li.binding[data-operation="1. JMS Listen"]`)))
		if got := b.text(ordersIn + " button.disclosure"); !strings.Contains(got, "▾") {
			t.Errorf("open disclosure shows %q, want ▾", got)
		}
	})

	listenerSwitch := ordersIn + " .switch-cell button[role=switch]"
	bindingSwitch := ordersIn + ` li.binding[data-operation="1. JMS Listen"] button[role=switch]`

	t.Run("turning a listener off turns its operations off", func(t *testing.T) {
		b := b.in(t)
		b.do("switch orders-in off", chromedp.Click(chromedp.CSS(listenerSwitch)))
		b.waitFor("orders-in off", `document.querySelector('`+listenerSwitch+`').getAttribute("aria-checked") === "false"`)
		l := ta.listener(t, "jms-orders/orders-in")
		if l.Enabled || l.Status != "off" || l.Operations[0].Enabled {
			t.Errorf("after switching it off the API reports %+v", l)
		}
		if got := b.text(bindingSwitch); got != "Off" {
			t.Errorf("the operation's switch shows %q, want Off", got)
		}
		if ta.listener(t, "jms-orders/orders-v3").Enabled != true {
			t.Error("switching orders-in off changed orders-v3")
		}
	})

	t.Run("messages wait while it is off, counted", func(t *testing.T) {
		b := b.in(t)
		for _, order := range []string{`{"id": "W-1", "qty": 1}`, `{"id": "W-2", "qty": 1}`} {
			if status, body := ta.do(t, http.MethodPost, "/hooks/jms-orders/send", "application/json", []byte(order)); status != http.StatusAccepted {
				t.Fatalf("send %s: %d %s", order, status, body)
			}
		}
		b.do("refresh", chromedp.Click(chromedp.CSS("#listener-refresh")))
		b.waitFor("a backlog of 2", `document.querySelector('`+ordersIn+` .counts').dataset.backlog === "2"`)
		if got := b.text(ordersIn + " .counts dd"); got != "2 waiting, 0 in flight, 0 consumers" {
			t.Errorf("orders-in's messages read %q", got)
		}
		b.screenshot("console-listeners-backlog")
	})

	t.Run("search by status", func(t *testing.T) {
		b := b.in(t)
		b.search("OFF")
		b.waitFor("one listener shown", `document.querySelectorAll("li.listener").length === 1`)
		if got := b.shownListeners(); got != "jms-orders/orders-in" {
			t.Errorf("searching OFF shows %q, want orders-in", got)
		}
		b.search("")
		b.waitFor("both listeners shown", `document.querySelectorAll("li.listener").length === 2`)
	})

	t.Run("turning a listener on leaves its operations as they are", func(t *testing.T) {
		b := b.in(t)
		b.do("switch orders-in on", chromedp.Click(chromedp.CSS(listenerSwitch)))
		b.waitFor("orders-in on", `document.querySelector('`+listenerSwitch+`').getAttribute("aria-checked") === "true"`)
		l := ta.listener(t, "jms-orders/orders-in")
		if !l.Enabled || l.Operations[0].Enabled {
			t.Errorf("after switching it on the API reports %+v, want the listener on and its operation still off", l)
		}
		b.do("switch its operation on", chromedp.WaitEnabled(chromedp.CSS(bindingSwitch)), chromedp.Click(chromedp.CSS(bindingSwitch)))
		b.waitFor("the operation on", `document.querySelector('`+bindingSwitch+`').getAttribute("aria-checked") === "true"`)
		if l := ta.listener(t, "jms-orders/orders-in"); !l.Enabled || !l.Operations[0].Enabled || l.Status != "on" {
			t.Errorf("after switching the operation on the API reports %+v", l)
		}
	})

	t.Run("refresh shows changes made elsewhere", func(t *testing.T) {
		b := b.in(t)
		status, body := ta.do(t, http.MethodPut, "/api/v1/listeners/jms-orders%2Forders-v3/state", "application/json", []byte(`{"enabled": false}`))
		if status != http.StatusOK {
			t.Fatalf("switch orders-v3 off through the API: %d %s", status, body)
		}
		b.do("refresh", chromedp.Click(chromedp.CSS("#listener-refresh")))
		b.waitFor("orders-v3 shown off", `document.querySelector('`+ordersV3+`').dataset.status === "off"`)
		ta.do(t, http.MethodPut, "/api/v1/listeners/jms-orders%2Forders-v3/state", "application/json", []byte(`{"enabled": true}`))
		ta.do(t, http.MethodPut, "/api/v1/listeners/jms-orders%2Forders-v3/operations/Customer%20Logic/state", "application/json", []byte(`{"enabled": true}`))
		b.do("refresh", chromedp.Click(chromedp.CSS("#listener-refresh")))
		b.waitFor("orders-v3 shown on", `document.querySelector('`+ordersV3+`').dataset.status === "on"`)
	})

	t.Run("the switches work from the keyboard", func(t *testing.T) {
		b := b.in(t)
		v3Switch := ordersV3 + " .switch-cell button[role=switch]"
		b.do("focus orders-v3's switch and press Space", chromedp.Focus(chromedp.CSS(v3Switch)), chromedp.KeyEvent(" "))
		b.waitFor("orders-v3 off", `document.querySelector('`+v3Switch+`').getAttribute("aria-checked") === "false"`)
		if !eval[bool](b, `document.activeElement === document.querySelector('`+v3Switch+`')`) {
			t.Fatal("the keyboard's place is lost after switching")
		}
		b.do("press Space again", chromedp.KeyEvent(" "))
		b.waitFor("orders-v3 on", `document.querySelector('`+v3Switch+`').getAttribute("aria-checked") === "true"`)
		if l := ta.listener(t, "jms-orders/orders-v3"); !l.Enabled {
			t.Errorf("after switching it on from the keyboard the API reports %+v", l)
		}
		ta.do(t, http.MethodPut, "/api/v1/listeners/jms-orders%2Forders-v3/operations/Customer%20Logic/state", "application/json", []byte(`{"enabled": true}`))
		b.do("refresh", chromedp.Click(chromedp.CSS("#listener-refresh")))
		b.waitFor("orders-v3 shown on", `document.querySelector('`+ordersV3+`').dataset.status === "on"`)
	})

	png := b.screenshot("console-listeners")
	if os.Getenv("OPSRUNNER_UPDATE_SCREENSHOTS") == "1" {
		if err := os.WriteFile(filepath.Join("..", "docs", "console-listeners.png"), png, 0o644); err != nil {
			t.Fatalf("update docs/console-listeners.png: %v", err)
		}
	}
	b.do("phone width", chromedp.EmulateViewport(390, 844))
	b.screenshot("console-listeners-phone")
}
