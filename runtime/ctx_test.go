package runtime

import (
	"context"
	"testing"
)

// ctx reaches every function that can read it, however it does.
func TestCtxReachesTheScript(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{})
	for name, src := range map[string]string{
		"declared":       `function handle(event, ctx) { return ctx.operation }`,
		"arguments":      `function handle(event) { return arguments[1].operation }`,
		"rest":           `function handle(...args) { return args[1].operation }`,
		"module.exports": `module.exports = (event, ctx) => ctx.operation`,
		"eval":           `function handle(event) { return eval("argu" + "ments")[1].operation }`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := newProject(t, "p", op{name: "op", src: src})
			res := e.Run(context.Background(), Invocation{Project: p, Operation: "op", Trigger: TriggerWebhook, Event: map[string]any{}})
			if res.Err != nil || res.value() != "op" {
				t.Fatalf("got %#v, %v; want \"op\"", res.value(), res.Err)
			}
		})
	}
}
