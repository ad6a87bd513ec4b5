package agent_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/opsrunner/opsrunner/scripts"
)

// jms2Bundle packs samples/jms-variation2 with a short redelivery backoff:
// the manifest's own policy, with its delays replaced.
func jms2Bundle(t *testing.T) []byte {
	t.Helper()
	files, err := scripts.ReadBundle(bytes.NewReader(sampleBundle(t, "jms-variation2")), scripts.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	manifest := string(files[scripts.ManifestFile])
	const policy = "initialDelay: 1s, multiplier: 2, maxDelay: 10s"
	if strings.Count(manifest, policy) != 1 {
		t.Fatalf("the sample's opsrunner.yaml no longer has %q once", policy)
	}
	out := make(map[string]string, len(files))
	for name, data := range files {
		out[name] = string(data)
	}
	out[scripts.ManifestFile] = strings.Replace(manifest, policy, "initialDelay: 50ms, multiplier: 2, maxDelay: 200ms", 1)
	return bundle(t, out)
}

// TestTheJMSVariation2SampleCommitsWhenBothOperationsPassAndRollsBackWhenEitherFails
// runs samples/jms-variation2 on the embedded broker, with its messages
// sent through the sample's own webhook as its curl lines send them.
func TestTheJMSVariation2SampleCommitsWhenBothOperationsPassAndRollsBackWhenEitherFails(t *testing.T) {
	t.Parallel()
	ta := startAgent(t, nil)
	ta.mustDeploy(t, "jms-variation2", jms2Bundle(t))
	waitFor(t, 30*time.Second, func() bool {
		r := ta.do(t, "GET", "/api/v1/listeners?q=jms-variation2", "", nil, nil)
		return strings.Count(string(r.Body), `"status":"on"`) == 1
	})
	conn, err := stomp.Dial("tcp", ta.BrokerAddr())
	if err != nil {
		t.Fatalf("dial the embedded broker: %v", err)
	}
	t.Cleanup(func() { _ = conn.Disconnect() })
	send := func(t *testing.T, contentType, body string) {
		t.Helper()
		r := ta.do(t, http.MethodPost, "/hooks/jms-variation2/send", contentType, []byte(body), nil)
		if r.Status != http.StatusAccepted {
			t.Fatalf("send %s: %d %s", body, r.Status, r.Body)
		}
	}
	listenRuns := func(t *testing.T) []runView {
		return ta.runsWhere(t, "project=jms-variation2&operation=1.+JMS+Listen")
	}
	deadLetter := func(t *testing.T, messageID string) map[string]any {
		t.Helper()
		var found map[string]any
		waitFor(t, 30*time.Second, func() bool {
			r := ta.do(t, "GET", "/api/v1/deadletters?listener=jms-variation2/orders-in", "", nil, nil)
			var page struct{ DeadLetters []map[string]any }
			_ = json.Unmarshal(r.Body, &page)
			for _, dl := range page.DeadLetters {
				if dl["messageId"] == messageID {
					found = dl
				}
			}
			return found != nil
		})
		return found
	}

	t.Run("both operations pass: the message is committed and its processed order published", func(t *testing.T) {
		send(t, "application/json", `{"id": "B-1", "qty": 2}`)
		var runs []runView
		waitFor(t, 30*time.Second, func() bool {
			runs = listenRuns(t)
			return len(runs) == 1 && runs[0].Outcome == "committed"
		})
		if runs[0].Status != "succeeded" || runs[0].Attempt != 1 {
			t.Errorf("run = %+v", runs[0])
		}
		processed := drain(t, conn, "/queue/orders.v2.processed", 2*time.Second)
		if len(processed) != 1 || !strings.Contains(string(processed[0].Body), `"id":"B-1"`) ||
			!strings.Contains(string(processed[0].Body), runs[0].MessageID) {
			t.Fatalf("processed orders: %d, want B-1 with its message id %s", len(processed), runs[0].MessageID)
		}
		if left := drain(t, conn, "/queue/orders.v2", time.Second); len(left) != 0 {
			t.Errorf("the committed message is still on the queue")
		}
	})

	t.Run("the business logic fails: rolled back, redelivered, dead-lettered; nothing published", func(t *testing.T) {
		before := len(listenRuns(t))
		send(t, "application/json", `{"id": "B-2", "qty": 0}`)
		var failed []runView
		waitFor(t, 30*time.Second, func() bool {
			failed = nil
			for _, r := range listenRuns(t) {
				if r.Outcome != "committed" {
					failed = append(failed, r)
				}
			}
			return len(failed) == 4 && len(listenRuns(t)) == before+4
		})
		dl := deadLetter(t, failed[0].MessageID)
		if dl["attempts"] != float64(4) || !strings.Contains(fmt.Sprint(dl["error"]), "order B-2: qty must be positive") ||
			dl["deadLetterDestination"] != "/queue/orders.v2.DLQ" {
			t.Errorf("dead letter = %v", dl)
		}
		outcomes := map[string]int{}
		for _, r := range failed {
			outcomes[r.Outcome]++
		}
		if outcomes["rolled_back"] != 3 || outcomes["dead_lettered"] != 1 {
			t.Errorf("outcomes of the 4 attempts: %v, want 3 rolled_back and 1 dead_lettered", outcomes)
		}
		if copies := drain(t, conn, "/queue/orders.v2.DLQ", 2*time.Second); len(copies) != 1 || !strings.Contains(string(copies[0].Body), "B-2") {
			t.Errorf("DLQ copies: %d", len(copies))
		}
		if processed := drain(t, conn, "/queue/orders.v2.processed", 2*time.Second); len(processed) != 0 {
			t.Errorf("a rolled-back order was published: %s", processed[0].Body)
		}
	})

	t.Run("the listener's operation fails: rolled back before the business logic runs", func(t *testing.T) {
		send(t, "text/plain", "not an order")
		var messageID string
		waitFor(t, 30*time.Second, func() bool {
			for _, r := range listenRuns(t) {
				if r.Status == "failed" && strings.Contains(r.Error, "is not an order") {
					messageID = r.MessageID
				}
			}
			return messageID != ""
		})
		dl := deadLetter(t, messageID)
		if dl["attempts"] != float64(4) || !strings.Contains(fmt.Sprint(dl["error"]), `is not an order: "not an order"`) {
			t.Errorf("dead letter = %v", dl)
		}
		if n := len(ta.runsWhere(t, "messageId="+messageID)); n != 4 {
			t.Errorf("%d runs of the message, want 4 attempts", n)
		}
		if processed := drain(t, conn, "/queue/orders.v2.processed", time.Second); len(processed) != 0 {
			t.Errorf("an order was published: %s", processed[0].Body)
		}
	})
}
