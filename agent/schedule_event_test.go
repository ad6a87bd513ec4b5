package agent_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/sdk"
	"github.com/opsrunner/opsrunner/store"
)

// declaredMembers are the member names of an interface of the opsrunner
// namespace in sdk/opsrunner.d.ts, its own (not inherited ones), sorted
// (as sdk/globals_test.go reads them).
func declaredMembers(t *testing.T, iface string) []string {
	t.Helper()
	src := sdk.Declarations()
	start := strings.Index(src, "\n  interface "+iface+" ")
	if start < 0 {
		t.Fatalf("opsrunner.d.ts declares no interface %s", iface)
	}
	body := src[start:]
	body = body[strings.Index(body, "{")+1 : strings.Index(body, "\n  }")]
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^    (\w+)\??[:(]`).FindAllStringSubmatch(body, -1) {
		names = append(names, m[1])
	}
	slices.Sort(names)
	return names
}

// eventKeys is what the probe operation returns: the keys of its event
// and ctx.
type eventKeys struct{ Event, Ctx []string }

func (k *eventKeys) sort() { slices.Sort(k.Event); slices.Sort(k.Ctx) }

// The event a schedule tick (and a run-now) gives its operations has the
// keys opsrunner.ScheduleEvent declares, and its ctx those of
// opsrunner.Context but the optional message. The scheduler builds the
// event inside the agent, so only a real tick shows it: sdk/globals_test.go
// checks the webhook and message events the same way without an agent.
func TestTheScheduleEventIsDeclaredAsTheAgentMakesIt(t *testing.T) {
	ta := startAgent(t, nil)
	ta.mustDeploy(t, "probe", bundle(t, map[string]string{
		"opsrunner.yaml": "project: probe\noperations:\n  - {name: keys, script: keys.js}\n" +
			"schedules:\n  - {name: tick, every: 1s, operations: [keys], input: {a: 1}}\n",
		"keys.js": "function handle(event, ctx) { return {event: Object.keys(event), ctx: Object.keys(ctx)}; }\n",
	}))
	wantEvent := declaredMembers(t, "ScheduleEvent")
	wantCtx := slices.DeleteFunc(declaredMembers(t, "Context"), func(s string) bool { return s == "message" })

	var tick store.Run
	waitFor(t, 30*time.Second, func() bool {
		for _, r := range ta.runs(t, "?trigger=schedule&project=probe&schedule=tick") {
			if r.ScheduledAt != nil && r.Status == store.StatusSucceeded {
				tick = r
				return true
			}
		}
		return false
	})
	r := ta.do(t, http.MethodPost, "/api/v1/schedules/"+url.PathEscape("probe/tick")+"/run", "", nil, nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("run now: %d %s", r.Status, r.Body)
	}
	var now store.Run
	waitFor(t, 30*time.Second, func() bool {
		g := ta.do(t, http.MethodGet, r.Header.Get("Location"), "", nil, nil)
		return json.Unmarshal(g.Body, &now) == nil && now.Status == store.StatusSucceeded
	})

	for what, run := range map[string]store.Run{"a tick": tick, "a run-now": now} {
		var got eventKeys
		if err := json.Unmarshal(run.Result, &got); err != nil {
			t.Fatalf("%s: result %s: %v", what, run.Result, err)
		}
		got.sort()
		if !slices.Equal(got.Event, wantEvent) {
			t.Errorf("%s's event has %v, opsrunner.ScheduleEvent declares %v", what, got.Event, wantEvent)
		}
		if !slices.Equal(got.Ctx, wantCtx) {
			t.Errorf("%s's ctx has %v, opsrunner.Context declares %v (and message)", what, got.Ctx, wantCtx)
		}
	}
}
