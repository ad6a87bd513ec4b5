package runtime

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
)

// A JSON body is built when first read, and from then on behaves as an
// ordinary data property of the event, whatever the script does to it.
func TestLazyEventBody(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	body := json.RawMessage(`{"id": 42, "tags": ["a"]}`)
	tests := []struct {
		name, src string
		want      any
	}{
		{"read twice is one object", `function handle(e) { return [e.body === e.body, e.body.id] }`, []any{true, 42.0}},
		{"enumerable and stringified", `function handle(e) { return [Object.keys(e).sort(), JSON.parse(JSON.stringify(e)).body.tags] }`,
			[]any{[]any{"body", "rawBody"}, []any{"a"}}},
		{"assigned before read", `function handle(e) { e.body = 5; return [e.body, Object.getOwnPropertyDescriptor(e, "body").writable] }`, []any{5.0, true}},
		{"a data property once read", `function handle(e) { e.body; const d = Object.getOwnPropertyDescriptor(e, "body"); return [typeof d.get, d.value.id] }`,
			[]any{"undefined", 42.0}},
		{"frozen event", `function handle(e) { Object.freeze(e); const a = e.body; return [a === e.body, a.id] }`, []any{true, 42.0}},
		{"inherited", `function handle(e) { const c = Object.create(e); return [c.body.id, c.body === e.body] }`, []any{42.0, true}},
		{"accessor functions are frozen", `function handle(e) { const d = Object.getOwnPropertyDescriptor(e, "body"); return [Object.isFrozen(d.get), Object.isFrozen(d.set)] }`,
			[]any{true, true}},
		{"returned whole", `function handle(e) { return e }`, map[string]any{"body": map[string]any{"id": 42.0, "tags": []any{"a"}}, "rawBody": string(body)}},
		{"message copy is the same value", `function handle(e, ctx) { return [ctx.message.body === e.body, ctx.message.body.id] }`, []any{true, 42.0}},
		{"message copy read first", `function handle(e, ctx) { const m = ctx.message.body; return [m === e.body, m.id] }`, []any{true, 42.0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newProject(t, "p", op{name: "op", src: tt.src})
			res := e.Run(context.Background(), Invocation{Project: p, Operation: "op", Trigger: TriggerListener,
				Event: map[string]any{"body": body, "rawBody": string(body)}, Message: &fakeMessage{id: "m1"}})
			if res.Err != nil || !reflect.DeepEqual(res.value(), tt.want) {
				t.Fatalf("got %#v, %v; want %#v", res.value(), res.Err, tt.want)
			}
		})
	}
}

// A script cannot leave state on the shared accessors for the next run.
func TestLazyAccessorsKeepNoState(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{Runtimes: 1})
	p := newProject(t, "p", op{name: "op", src: `function handle(e) {
		const g = Object.getOwnPropertyDescriptor(e, "body").get;
		const seen = g.mark; try { g.mark = 1 } catch (err) {}
		return seen === undefined }`})
	for i := range 3 {
		res := e.Run(context.Background(), Invocation{Project: p, Operation: "op", Trigger: TriggerWebhook,
			Event: map[string]any{"body": json.RawMessage(`{}`)}})
		if res.Err != nil || res.value() != true {
			t.Fatalf("run %d: got %#v, %v; want true", i, res.value(), res.Err)
		}
	}
}

// A func() any in the event is called once, and only when the script reads
// its field.
func TestLazyEventFunc(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	for _, tt := range []struct {
		src       string
		wantCalls int
	}{
		{`function handle(e) { return e.id }`, 0},
		{`function handle(e) { return e.props.a + e.props.a }`, 1},
	} {
		calls := 0
		event := map[string]any{"id": "m1", "props": func() any { calls++; return map[string]any{"a": "x"} }}
		p := newProject(t, "p", op{name: "op", src: tt.src})
		res := e.Run(context.Background(), Invocation{Project: p, Operation: "op", Trigger: TriggerListener, Event: event})
		if res.Err != nil || calls != tt.wantCalls {
			t.Fatalf("%s: got %#v, %v after %d calls; want %d calls", tt.src, res.value(), res.Err, calls, tt.wantCalls)
		}
	}
}
