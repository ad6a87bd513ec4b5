package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

func TestRunOperation(t *testing.T) {
	t.Parallel()
	other := newProject(t, "billing", op{name: "Charge", src: `function handle(e) { return "charged " + e.amount }`})
	other.Manifest.Exports = []scripts.Export{{Operation: "Charge", To: []string{"orders"}}}
	disp := &fakeDispatcher{}
	e := newEngine(t, Config{Projects: projectSet{"billing": other}, Dispatcher: disp})
	tests := []struct {
		name, src string
		want      any
		steps     []string
	}{
		{"by name, caller's event", `function handle(e) { Set("shared", 7); return RunOperation("Helper") }`, map[string]any{"got": 1.0, "v": 7.0}, []string{"main", "Helper", "After Helper"}},
		{"input and vars", `function handle() { const r = RunOperation("Helper", true, {n: 5}); return [r.got, Get("seen"), $vars.seen] }`, []any{5.0, 5.0, 5.0}, nil},
		{"project/name", `function handle() { return RunOperation("billing/Charge", true, {amount: 3}) }`, "charged 3", []string{"main", "billing/Charge"}},
		{"own project/name", `function handle() { return RunOperation("orders/Helper").got }`, 1.0, nil},
		{"TAG reference", `function handle() { return RunOperation("<TAG>Operations/Helper</TAG>").got }`, 1.0, nil},
		{"failure throws, catchable", `function handle() { try { RunOperation("Fails") } catch (e) { return [e.message, e.operation, GetLastError()] } }`, []any{"helper failed", "Fails", "helper failed"}, nil},
		{"unknown operation throws", `function handle() { try { RunOperation("Nope") } catch (e) { return e.message } }`, `RunOperation: unknown operation "Nope"`, nil},
		{"wait=false dispatches", `function handle() { return RunOperation("Helper", false, {n: 9}) }`, "run-1", []string{"main"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pp := newProject(t, "orders", append([]op{{name: "main", src: tt.src}},
				op{name: "Helper", src: `function handle(e) { Set("seen", e.n); return {got: e.n, v: Get("shared")} }`, onSuccess: []string{"After Helper"}},
				op{name: "After Helper", src: `function handle(e) { log.info("after helper " + e.n) }`},
				op{name: "Fails", src: `function handle() { RaiseError("helper failed") }`})...)
			res := e.Run(context.Background(), Invocation{Project: pp, Operation: "main", Event: map[string]any{"n": 1.0}})
			if res.Err != nil || !reflect.DeepEqual(res.value(), tt.want) {
				t.Fatalf("got %#v, %v; want %#v", res.value(), res.Err, tt.want)
			}
			if tt.steps != nil {
				var got []string
				for _, s := range res.Steps {
					got = append(got, s.Operation)
				}
				if !reflect.DeepEqual(got, tt.steps) {
					t.Fatalf("steps %v, want %v", got, tt.steps)
				}
			}
		})
	}
	if len(disp.invs) != 1 || disp.invs[0].Operation != "Helper" || disp.invs[0].Trigger != TriggerOperation ||
		!reflect.DeepEqual(disp.invs[0].Event, map[string]any{"n": 9.0}) {
		t.Fatalf("dispatched %+v", disp.invs)
	}

	t.Run("TAG reference acknowledges", func(t *testing.T) {
		msg := &fakeMessage{id: "m1"}
		pp := newProject(t, "orders", op{name: "main", src: `function handle() { RunOperation("<TAG>Operations/4. JMS Acknowledge (Commit)</TAG>", true) }`},
			op{name: "4. JMS Acknowledge (Commit)", ackAction: scripts.ActionCommit})
		res := e.Run(context.Background(), Invocation{Project: pp, Operation: "main", Message: msg})
		if res.Err != nil || !reflect.DeepEqual(msg.log(), []string{"commit"}) {
			t.Fatalf("%v %v", res.Err, msg.log())
		}
	})
	t.Run("no dispatcher", func(t *testing.T) {
		e := newEngine(t, Config{})
		res := runOne(t, e, `function handle() { RunOperation("main", false) }`, nil)
		if res.Err == nil || !strings.Contains(res.Err.Error(), "async runs are not available") {
			t.Fatal(res.Err)
		}
	})
	t.Run("cycle is bounded", func(t *testing.T) {
		res := runOne(t, e, `function handle() { return RunOperation("main") }`, nil)
		if res.Err == nil || !strings.Contains(res.Err.Error(), "chain deeper") {
			t.Fatal(res.Err)
		}
	})
}

func TestChains(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	msg := &fakeMessage{id: "m1"}
	p := newProject(t, "p",
		op{name: "Process", src: `function handle(e) { Set("step", 1); if (e.fail) RaiseError("no stock"); return "ok" }`,
			onSuccess: []string{"Log", "Commit"}, onFailure: []string{"Report", "Rollback"}},
		op{name: "Log", src: `function handle(e) { log.info("success", Get("step"), e) }`},
		op{name: "Report", src: `function handle() { log.error("failed: " + GetLastError()) }`},
		op{name: "Commit", ackAction: "jbxcommit"},
		op{name: "Rollback", ackAction: scripts.ActionRollback},
	)
	res := e.Run(context.Background(), Invocation{Project: p, Operation: "Process", Message: msg, Event: map[string]any{"fail": false}})
	if res.Status != store.StatusSucceeded || res.value() != "ok" || len(res.Steps) != 3 || res.Logs[0].Message != `success 1 {"fail":false}` {
		t.Fatalf("%+v", res)
	}
	res = e.Run(context.Background(), Invocation{Project: p, Operation: "Process", Message: msg, Event: map[string]any{"fail": true}})
	se := scriptErr(t, res.Err)
	if res.Status != store.StatusFailed || se.Message != "no stock" || res.Logs[0].Message != "failed: no stock" || res.Logs[0].Level != "error" {
		t.Fatalf("%+v", res)
	}
	// The rollback carries the failure that led to it: it becomes the dead letter's cause.
	want := []string{"commit", `rollback: no stock (rolled back by operation "Rollback")`}
	if !reflect.DeepEqual(msg.log(), want) {
		t.Fatalf("message log %v, want %v", msg.log(), want)
	}
	res = e.Run(context.Background(), Invocation{Project: p, Operation: "Commit"})
	if res.Err == nil || !strings.Contains(res.Err.Error(), "handles no message") {
		t.Fatal(res.Err)
	}
}

func TestAcknowledge(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	tests := []struct {
		src     string
		want    []string
		errPart string
	}{
		{`function handle() { Acknowledge("JBXCOMMIT") }`, []string{"commit"}, ""},
		{`function handle() { Acknowledge("jbxRollback", "m1") }`, []string{`rollback: rolled back by Acknowledge in operation "main"`}, ""},
		{`function handle() { Acknowledge("commit") }`, nil, "unknown action"},
		{`function handle() { Acknowledge("JBXCommit", "other") }`, nil, "is not this run's message"},
		{`function handle(e, ctx) { ctx.message.commit(); return [ctx.message.id, ctx.message.destination] }`, []string{"commit"}, ""},
		{`function handle(e, ctx) { ctx.message.rollback("bad data") }`, []string{"rollback: bad data"}, ""},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			msg := &fakeMessage{id: "m1"}
			p := newProject(t, "p", op{name: "main", src: tt.src})
			res := e.Run(context.Background(), Invocation{Project: p, Operation: "main", Message: msg, Event: map[string]any{"destination": "/queue/a"}})
			if tt.errPart != "" {
				if res.Err == nil || !strings.Contains(res.Err.Error(), tt.errPart) {
					t.Fatalf("err %v, want %q", res.Err, tt.errPart)
				}
				return
			}
			if res.Err != nil || !reflect.DeepEqual(msg.log(), tt.want) {
				t.Fatalf("err %v, log %v, want %v", res.Err, msg.log(), tt.want)
			}
		})
	}
}

func TestSendMessage(t *testing.T) {
	t.Parallel()
	snd := &fakeSender{}
	e := newEngine(t, Config{Sender: snd})
	res := runOne(t, e, `function handle() {
		SendMessage("/queue/a", "plain");
		SendMessage("/topic/b", {x: 1}, {headers: {k: "v"}, persistent: true, priority: 4, correlationId: "c1", replyTo: "/queue/r", type: "T", ackTimeout: 30});
	}`, nil)
	if res.Err != nil || len(snd.sent) != 2 {
		t.Fatalf("%v %+v", res.Err, snd.sent)
	}
	if snd.sent[0].dest != "/queue/a" || snd.sent[0].body != "plain" {
		t.Fatalf("%+v", snd.sent[0])
	}
	wantH := map[string]string{"content-type": "application/json", "k": "v", "persistent": "true", "priority": "4",
		"correlation-id": "c1", "reply-to": "/queue/r", "type": "T", "JBXAcknowledgmentTimeout": "30"}
	if snd.sent[1].body != `{"x":1}` || !reflect.DeepEqual(snd.sent[1].headers, wantH) {
		t.Fatalf("%+v", snd.sent[1])
	}
	t.Run("inside a delivery joins its transaction", func(t *testing.T) {
		msg := &fakeMessage{id: "m"}
		p := newProject(t, "p", op{name: "main", src: `function handle() { SendMessage("/queue/out", "x") }`})
		res := e.Run(context.Background(), Invocation{Project: p, Operation: "main", Message: msg})
		if res.Err != nil || !reflect.DeepEqual(msg.log(), []string{"send /queue/out x"}) || len(snd.sent) != 2 {
			t.Fatal(res.Err, msg.log())
		}
	})
	t.Run("no broker", func(t *testing.T) {
		res := runOne(t, newEngine(t, Config{}), `function handle() { SendMessage("/queue/a", "x") }`, nil)
		if res.Err == nil || !strings.Contains(res.Err.Error(), "no broker connection") {
			t.Fatal(res.Err)
		}
	})
}

func TestVarsAndLogs(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	p := newProject(t, "p", op{name: "main", src: `function handle() { $vars.a = 1; Set("b", Get("a") + 1); return [Get("init"), $vars.b, Get("missing")] }`})
	res := e.Run(context.Background(), Invocation{Project: p, Operation: "main", Vars: map[string]any{"init": "x"}})
	if res.Err != nil || !reflect.DeepEqual(res.value(), []any{"x", 2.0, nil}) {
		t.Fatal(res.value(), res.Err)
	}
	res = runOne(t, e, `function handle() { console.log("c"); log.warn(new Error("e")); for (let i = 0; i < 1100; i++) log.info("x".repeat(10000)) }`, nil)
	if res.Err != nil || len(res.Logs) != maxLogLines+1 {
		t.Fatal(res.Err, len(res.Logs))
	}
	if res.Logs[0].Message != "c" || res.Logs[1].Message != "Error: e" || res.Logs[1].Level != "warn" {
		t.Fatal(res.Logs[:2])
	}
	if l := res.Logs[2].Message; len(l) > maxLogLineBytes+32 || !strings.HasSuffix(l, "[truncated]") {
		t.Fatal(len(l))
	}
	if last := res.Logs[maxLogLines].Message; !strings.Contains(last, "102 more lines dropped") {
		t.Fatal(last)
	}
}

func TestFilter(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	p := newProject(t, "p",
		op{name: "f1", src: `function filter(e) { return e.type === "order" }`},
		op{name: "f2", src: `module.exports = async (e) => e.n > 1`},
		op{name: "f3", src: `function filter() { throw new Error("bad") }`},
	)
	for _, tt := range []struct {
		path  string
		event any
		want  bool
		err   bool
	}{
		{"operations/op0.js", map[string]any{"type": "order"}, true, false},
		{"operations/op0.js", map[string]any{"type": "x"}, false, false},
		{"operations/op1.js", map[string]any{"n": 2.0}, true, false},
		{"operations/op2.js", nil, false, true},
		{"missing.js", nil, false, true},
	} {
		ok, err := e.Filter(context.Background(), p, tt.path, tt.event)
		if ok != tt.want || (err != nil) != tt.err {
			t.Errorf("%s %v: %v %v", tt.path, tt.event, ok, err)
		}
	}
}

func TestMemoryLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates hundreds of MiB")
	}
	e := newEngine(t, Config{MemoryLimit: 256 << 20})
	// Runaways that grow the heap fast even under -race (an array filled
	// element by element took 30 s or more there, and hit the time limit
	// first on a loaded machine); the time limit is far away.
	for _, src := range []string{
		`function handle() { let a = []; while (true) a.push(new Uint8Array(16 << 20)) }`,
		`function handle() { let a = []; while (true) a.push("x".repeat(1 << 24) + a.length) }`,
	} {
		p := newProject(t, "p", op{name: "main", src: src, timeout: 5 * time.Minute})
		res := e.Run(context.Background(), Invocation{RunID: "r1", Project: p, Operation: "main", Trigger: TriggerWebhook})
		if !errors.Is(res.Err, ErrMemoryLimit) || res.Status != store.StatusFailed {
			t.Fatalf("%s: status %s err %v", src, res.Status, res.Err)
		}
	}
	// The engine still works afterwards.
	if res := runOne(t, e, `function handle() { return 1 }`, nil); res.value() != 1.0 {
		t.Fatal(res.Err)
	}
}

func TestEventKeysAreOwnProperties(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	event := map[string]any{"body": map[string]any{"__proto__": map[string]any{"polluted": true}, "__defineGetter__": 1.0, "toString": "s"}}
	res := runOne(t, e, `function handle(e) { const b = e.body;
		return [Object.getPrototypeOf(b) === Object.prototype, b.polluted, Object.keys(b).sort(), b.__defineGetter__, b.toString] }`, event)
	want := []any{true, nil, []any{"__defineGetter__", "__proto__", "toString"}, 1.0, "s"}
	if res.Err != nil || !reflect.DeepEqual(res.value(), want) {
		t.Fatalf("got %#v, %v; want %#v", res.value(), res.Err, want)
	}
}

func TestEventRawJSON(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	tests := []struct {
		name string
		raw  json.RawMessage
		want any
	}{
		{"object", json.RawMessage(`{"id": 42, "tags": ["a"], "__proto__": {"x": 1}}`), []any{map[string]any{"id": 42.0, "tags": []any{"a"}, "__proto__": map[string]any{"x": 1.0}}, true}},
		{"surrogate escape", json.RawMessage(`"\ud83d\ude00"`), []any{"😀", true}},
		{"not JSON", json.RawMessage(`{nope`), []any{"{nope", true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := runOne(t, e, `function handle(e) { return [e.body, typeof e.body !== "object" || Object.getPrototypeOf(e.body) === Object.prototype] }`,
				map[string]any{"body": tt.raw})
			if res.Err != nil || !reflect.DeepEqual(res.value(), tt.want) {
				t.Fatalf("got %#v, %v; want %#v", res.value(), res.Err, tt.want)
			}
		})
	}
}
