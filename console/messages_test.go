package console_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

type deadLetter struct {
	ID        string `json:"id"`
	MessageID string `json:"messageId"`
	Attempts  int    `json:"attempts"`
}

func (ta *testAgent) deadLetters(t *testing.T) []deadLetter {
	t.Helper()
	var res struct {
		DeadLetters []deadLetter `json:"deadLetters"`
	}
	ta.getJSON(t, "/api/v1/deadletters", &res)
	return res.DeadLetters
}

// runsOf counts the runs the API lists for a message id.
func (ta *testAgent) runsOf(t *testing.T, messageID string) int {
	t.Helper()
	var res struct {
		Runs []struct{ ID string } `json:"runs"`
	}
	ta.getJSON(t, "/api/v1/runs?messageId="+url.QueryEscape(messageID), &res)
	return len(res.Runs)
}

// A failing message, seen through the page: it appears in Runs (which
// refreshes itself) with every attempt, and in Dead letters, from where a
// confirmed replay runs it again.
func TestRunsAndDeadLettersPages(t *testing.T) {
	ta := startAgent(t, nil)
	ta.deploy(t, "jms-orders", sampleBundle(t, "jms-orders"))
	b := newBrowser(t)
	b.do("open Runs", chromedp.Navigate(ta.URL+"/console/runs"), chromedp.WaitVisible(chromedp.CSS("#runs-body")))

	// The order with qty 0 fails in "2. Business Logic" on every attempt:
	// 1 + 3 redeliveries, then the dead-letter queue.
	for _, order := range []string{`{"id": "A-1", "qty": 2}`, `{"id": "B-1", "qty": 0}`} {
		if status, body := ta.do(t, http.MethodPost, "/hooks/jms-orders/send", "application/json", []byte(order)); status != http.StatusAccepted {
			t.Fatalf("send %s: %d %s", order, status, body)
		}
	}
	var dl deadLetter
	eventually(t, "the failing order to be dead-lettered", func() bool {
		dls := ta.deadLetters(t)
		if len(dls) == 1 {
			dl = dls[0]
		}
		return len(dls) == 1
	})
	attempts := ta.runsOf(t, dl.MessageID)

	t.Run("runs appear without a reload, newest first", func(t *testing.T) {
		b := b.in(t)
		b.waitFor("the dead-lettered run", `document.querySelector('#runs-body tr[data-outcome="dead_lettered"]') !== null`)
		b.waitFor("the committed run", `document.querySelector('#runs-body tr[data-outcome="committed"]') !== null`)
		sorted := eval[bool](b, `(() => { const t = [...document.querySelectorAll("#runs-body tr[data-run]")].map((r) => r.dataset.run);
			return t.length > 1 && t.every((id, i) => i === 0 || t[i-1] > id); })()`)
		if !sorted {
			t.Error("runs are not listed newest first (run ids are time-ordered)")
		}
		b.screenshot("console-runs")
	})

	t.Run("filters narrow the list", func(t *testing.T) {
		b := b.in(t)
		b.do("filter by message id",
			chromedp.SendKeys(chromedp.CSS("#f-messageId"), dl.MessageID),
			chromedp.Click(chromedp.CSS(`#run-filters button[type=submit]`)))
		b.waitFor("only that message's runs", `[...document.querySelectorAll("#runs-body tr[data-run]")].length === `+strconv.Itoa(attempts)+
			` && [...document.querySelectorAll("#runs-body tr[data-run] td.mono")].every((td) => td.textContent === `+strconv.Quote(dl.MessageID)+`)`)
		if loc := eval[string](b, `location.search`); !strings.Contains(loc, "messageId=") {
			t.Errorf("the filter is not kept in the URL: %q", loc)
		}
		b.do("filter by status failed too", chromedp.SetValue(chromedp.CSS("#f-status"), "failed"),
			chromedp.Evaluate[chromedp.Void](`document.querySelector("#f-status").dispatchEvent(new Event("change"))`))
		b.waitFor("failed runs only", `document.querySelectorAll('#runs-body tr[data-run]').length > 0 &&
			[...document.querySelectorAll('#runs-body tr[data-run]')].every((r) => r.dataset.status === "failed")`)
		b.do("clear the filters", chromedp.Click(chromedp.CSS(`#run-filters button.secondary`)))
		b.waitFor("the committed run again", `document.querySelector('#runs-body tr[data-outcome="committed"]') !== null`)
	})

	t.Run("older runs are a page away", func(t *testing.T) {
		b := b.in(t)
		b.do("open Runs two by two", chromedp.Navigate(ta.URL+"/console/runs?limit=2"),
			chromedp.WaitVisible(chromedp.CSS("#runs-pager button")))
		shown := `[...document.querySelectorAll("#runs-body tr[data-run]")].map((r) => r.dataset.run).join(",")`
		first := eval[string](b, shown)
		b.do("show older runs", chromedp.Click(chromedp.CSS("#runs-pager button:last-child")))
		b.waitFor("another page", shown+` !== `+strconv.Quote(first)+` && document.querySelectorAll("#runs-body tr[data-run]").length === 2`)
		if older := eval[string](b, shown); older >= first {
			t.Errorf("the older page shows %s after %s", older, first)
		}
		b.do("back to the newest", chromedp.Click(chromedp.CSS("#runs-pager button:first-child")))
		b.waitFor("the first page", shown+` === `+strconv.Quote(first))
		b.do("back to every run", chromedp.Navigate(ta.URL+"/console/runs"),
			chromedp.WaitVisible(chromedp.CSS(`#runs-body tr[data-outcome="dead_lettered"]`)))
	})

	t.Run("a run's page shows its error, its input and every attempt of its message", func(t *testing.T) {
		b := b.in(t)
		b.do("open the dead-lettered run", chromedp.Click(chromedp.CSS(`#runs-body tr[data-outcome="dead_lettered"] a`)),
			chromedp.WaitVisible(chromedp.CSS("#run-attempts")))
		if got := b.text("#run-error"); !strings.Contains(got, "qty must be positive") {
			t.Errorf("the run's error reads %q", got)
		}
		if got := b.text("#run-error mark.loc"); !regexp.MustCompile(`^operations/[\w.-]+\.js:\d+:\d+$`).MatchString(got) {
			t.Errorf("the error's place is marked as %q, want file:line:col", got)
		}
		if got := b.text("#run-input"); !strings.Contains(got, `"B-1"`) {
			t.Errorf("the run's input reads %q, want the order it was given", got)
		}
		if n := eval[int](b, `document.querySelectorAll("#run-attempts tbody tr").length`); n != attempts || n < 4 {
			t.Errorf("the run's page lists %d attempts; the API has %d runs of the message (1 + 3 redeliveries expected)", n, attempts)
		}
		if got := b.text(".dead-letter-link"); !strings.Contains(got, "Dead-lettered") {
			t.Errorf("no link to the dead letter: %q", got)
		}
		if got := b.text("#run-logs"); !strings.Contains(got, "received") {
			t.Errorf("the run's logs read %q", got)
		}
		b.screenshot("console-run")
	})

	card := `article.deadletter[data-message="` + dl.MessageID + `"]`
	t.Run("dead letters list the message; replay asks first, then runs it again", func(t *testing.T) {
		b := b.in(t)
		b.do("open Dead letters from the navigation", chromedp.Click(chromedp.CSS(`nav a[data-page="deadletters"]`)),
			chromedp.WaitVisible(chromedp.CSS(card)))
		if got := b.text(card); !strings.Contains(got, "qty must be positive") || !strings.Contains(got, "/queue/orders.DLQ") {
			t.Errorf("the dead letter reads %q", got)
		}
		b.screenshot("console-deadletters")

		b.do("replay, then cancel", chromedp.Click(chromedp.CSS(card+" button.replay")),
			chromedp.WaitVisible(chromedp.CSS("dialog.confirm")),
			chromedp.Click(chromedp.CSS("dialog.confirm button.secondary")),
			chromedp.WaitNotPresent(chromedp.CSS("dialog.confirm")))
		if len(ta.deadLetters(t)) != 1 {
			t.Fatal("a cancelled replay replayed")
		}

		b.do("replay, then confirm", chromedp.Click(chromedp.CSS(card+" button.replay")),
			chromedp.WaitVisible(chromedp.CSS("dialog.confirm")),
			chromedp.Click(chromedp.CSS("dialog.confirm button.danger")))
		b.waitFor("the replay to be reported", `document.querySelector("#dl-status").textContent.includes("Replayed")`)
		b.waitFor("the dead letter to leave the list", `document.querySelector('`+card+`') === null`)
		eventually(t, "the replayed message to run again", func() bool { return ta.runsOf(t, dl.MessageID) > attempts })
	})

	t.Run("delete asks first, then the dead letter is gone", func(t *testing.T) {
		b := b.in(t)
		// The replayed message fails again: a second dead letter.
		eventually(t, "the replayed message to be dead-lettered again", func() bool { return len(ta.deadLetters(t)) == 1 })
		again := ta.deadLetters(t)[0]
		card := `article.deadletter[data-id="` + again.ID + `"]`
		b.do("refresh", chromedp.Click(chromedp.CSS("#dl-refresh")), chromedp.WaitVisible(chromedp.CSS(card+" button.delete")))
		b.do("delete, then cancel", chromedp.Click(chromedp.CSS(card+" button.delete")),
			chromedp.WaitVisible(chromedp.CSS("dialog.confirm")),
			chromedp.Click(chromedp.CSS("dialog.confirm button.secondary")),
			chromedp.WaitNotPresent(chromedp.CSS("dialog.confirm")))
		if len(ta.deadLetters(t)) != 1 {
			t.Fatal("a cancelled delete deleted")
		}
		b.do("delete, then confirm", chromedp.Click(chromedp.CSS(card+" button.delete")),
			chromedp.WaitVisible(chromedp.CSS("dialog.confirm")),
			chromedp.Click(chromedp.CSS("dialog.confirm button.danger")))
		b.waitFor("the deletion to be reported", `document.querySelector("#dl-status").textContent.includes("Deleted")`)
		if eval[bool](b, `document.querySelector('`+card+`') !== null`) {
			t.Error("the deleted dead letter is still listed")
		}
		if n := len(ta.deadLetters(t)); n != 0 {
			t.Errorf("after the delete the API lists %d dead letters", n)
		}
		if status, _ := ta.do(t, http.MethodGet, "/api/v1/deadletters/"+url.PathEscape(again.ID), "", nil); status != http.StatusNotFound {
			t.Errorf("GET the deleted dead letter: %d, want 404", status)
		}
	})
}
