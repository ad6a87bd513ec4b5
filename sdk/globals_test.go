package sdk_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/opsrunner/opsrunner/runtime"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/sdk"
	"github.com/opsrunner/opsrunner/triggers"
)

// esGlobals are the global names of ECMAScript itself (ES2020 and the
// Annex B functions), as goja defines them, and GoError, goja's own: they
// come from the engine, not from opsrunner, and the ES library of tsc
// declares all but GoError.
var esGlobals = []string{
	"AggregateError", "Array", "ArrayBuffer", "BigInt", "BigInt64Array", "BigUint64Array", "Boolean",
	"DataView", "Date", "Error", "EvalError", "Float32Array", "Float64Array", "Function", "GoError",
	"Infinity", "Int16Array", "Int32Array", "Int8Array", "JSON", "Map", "Math", "NaN", "Number", "Object",
	"Promise", "Proxy", "RangeError", "ReferenceError", "Reflect", "RegExp", "Set", "String", "Symbol",
	"SyntaxError", "TypeError", "URIError", "Uint16Array", "Uint32Array", "Uint8Array", "Uint8ClampedArray",
	"WeakMap", "WeakSet", "decodeURI", "decodeURIComponent", "encodeURI", "encodeURIComponent", "escape",
	"eval", "globalThis", "isFinite", "isNaN", "parseFloat", "parseInt", "undefined", "unescape",
}

// run runs script as the only operation of a project on a fresh engine
// and returns its result decoded from JSON.
func run(t *testing.T, script string, inv runtime.Invocation) any {
	t.Helper()
	files := map[string][]byte{
		scripts.ManifestFile: []byte("project: probe\noperations:\n  - name: probe\n    script: probe.js\n"),
		"probe.js":           []byte(script),
	}
	p, err := scripts.Load("probe", 1, files, scripts.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := runtime.New(runtime.Config{NoPrewarm: true})
	t.Cleanup(e.Close)
	inv.Project, inv.Operation, inv.RunID = p, "probe", "run-1"
	res := e.Run(context.Background(), inv)
	if res.Err != nil {
		t.Fatalf("probe run: %v", res.Err)
	}
	var out any
	if err := json.Unmarshal(res.JSON, &out); err != nil {
		t.Fatalf("probe result %s: %v", res.JSON, err)
	}
	return out
}

func strs(t *testing.T, v any) []string {
	t.Helper()
	list, ok := v.([]any)
	if !ok {
		t.Fatalf("want a list of names, got %v", v)
	}
	out := make([]string, len(list))
	for i, x := range list {
		out[i] = x.(string)
	}
	slices.Sort(out)
	return out
}

// declaredGlobals are the values opsrunner.d.ts declares at its top level.
func declaredGlobals() []string {
	re := regexp.MustCompile(`(?m)^declare (?:function|const|let|var|class) ([$\w]+)`)
	var names []string
	for _, m := range re.FindAllStringSubmatch(sdk.Declarations(), -1) {
		if !slices.Contains(names, m[1]) {
			names = append(names, m[1])
		}
	}
	slices.Sort(names)
	return names
}

// declaredMembers are the member names of an interface of the opsrunner
// namespace, its own (not inherited ones).
func declaredMembers(t *testing.T, iface string) []string {
	t.Helper()
	src := sdk.Declarations()
	start := strings.Index(src, "\n  interface "+iface+" ")
	if start < 0 {
		t.Fatalf("opsrunner.d.ts declares no interface %s", iface)
	}
	body := src[start:]
	body = body[strings.Index(body, "{")+1 : strings.Index(body, "\n  }")]
	re := regexp.MustCompile(`(?m)^    (\w+)\??[:(]`)
	var names []string
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		names = append(names, m[1])
	}
	slices.Sort(names)
	return names
}

func TestEveryGlobalOfTheRuntimeIsDeclaredAndNothingElse(t *testing.T) {
	got := strs(t, run(t, "function handle() { return Object.getOwnPropertyNames(globalThis); }\n",
		runtime.Invocation{Trigger: runtime.TriggerWebhook, Event: map[string]any{}}))
	var ours []string
	for _, name := range got {
		if !slices.Contains(esGlobals, name) {
			ours = append(ours, name)
		}
	}
	declared := declaredGlobals()
	for _, name := range ours {
		if !slices.Contains(declared, name) {
			t.Errorf("the runtime defines the global %s, which sdk/opsrunner.d.ts does not declare", name)
		}
	}
	for _, name := range declared {
		if !slices.Contains(ours, name) {
			t.Errorf("sdk/opsrunner.d.ts declares the global %s, which the runtime does not define", name)
		}
	}
	if len(ours) < 15 {
		t.Errorf("found only %d opsrunner globals (%v): the probe is broken", len(ours), ours)
	}
}

func TestTheWebhookEventAndContextAreDeclaredAsTheRuntimeMakesThem(t *testing.T) {
	req := httptest.NewRequest("POST", "/hooks/probe/probe?a=1", strings.NewReader(`{"x":1}`))
	req.Header.Set("Content-Type", "application/json")
	event, err := triggers.WebhookEvent(req, "probe", []byte(`{"x":1}`))
	if err != nil {
		t.Fatal(err)
	}
	got := run(t, "function handle(event, ctx) { return {event: Object.keys(event), ctx: Object.keys(ctx)}; }\n",
		runtime.Invocation{Trigger: runtime.TriggerWebhook, Event: event}).(map[string]any)
	if want, got := declaredMembers(t, "WebhookEvent"), strs(t, got["event"]); !slices.Equal(got, want) {
		t.Errorf("a webhook event has %v, opsrunner.WebhookEvent declares %v", got, want)
	}
	// ctx.message is declared optional: a webhook run has none.
	want := slices.DeleteFunc(declaredMembers(t, "Context"), func(s string) bool { return s == "message" })
	if got := strs(t, got["ctx"]); !slices.Equal(got, want) {
		t.Errorf("a webhook run's ctx has %v, opsrunner.Context declares %v (and message)", got, want)
	}
}

// delivery is a broker message as a listener hands it to the runtime.
type delivery struct{ m triggers.Message }

func (d delivery) Message() triggers.Message                                     { return d.m }
func (d delivery) ID() string                                                    { return d.m.ID }
func (d delivery) Commit(context.Context) error                                  { return nil }
func (d delivery) Rollback(context.Context, error) error                         { return nil }
func (d delivery) Send(context.Context, string, []byte, map[string]string) error { return nil }

func TestTheMessageEventAndDeliveryAreDeclaredAsTheRuntimeMakesThem(t *testing.T) {
	d := delivery{triggers.Message{ID: "m-1", Destination: "/queue/in", Attempt: 1, Body: []byte(`{"id":1}`),
		Headers: triggers.HeadersOf([]string{"content-type", "application/json", "region", "emea"})}}
	got := run(t, `function handle(event, ctx) {
  return {event: Object.keys(event), props: Object.keys(event.properties), ctx: Object.keys(ctx), message: Object.keys(ctx.message)};
}
`, runtime.Invocation{Trigger: runtime.TriggerListener, Event: triggers.EventFor(d), Message: d}).(map[string]any)
	event := declaredMembers(t, "MessageEvent")
	if got := strs(t, got["event"]); !slices.Equal(got, event) {
		t.Errorf("a message event has %v, opsrunner.MessageEvent declares %v", got, event)
	}
	props := append(declaredMembers(t, "MessageProperties"), "JMS_PROP_region")
	slices.Sort(props)
	if got := strs(t, got["props"]); !slices.Equal(got, props) {
		t.Errorf("a message's properties are %v, opsrunner.MessageProperties declares %v", got, props)
	}
	if got, want := strs(t, got["ctx"]), declaredMembers(t, "Context"); !slices.Equal(got, want) {
		t.Errorf("a listener run's ctx has %v, opsrunner.Context declares %v", got, want)
	}
	delivery := append(declaredMembers(t, "Delivery"), event...)
	slices.Sort(delivery)
	if got := strs(t, got["message"]); !slices.Equal(got, delivery) {
		t.Errorf("ctx.message has %v, opsrunner.Delivery declares %v", got, delivery)
	}
}

func TestLogAndConsoleAreDeclaredAsTheRuntimeMakesThem(t *testing.T) {
	got := run(t, "function handle() { return {log: Object.keys(log), console: Object.keys(console)}; }\n",
		runtime.Invocation{Trigger: runtime.TriggerWebhook, Event: map[string]any{}}).(map[string]any)
	logger := declaredMembers(t, "Logger")
	if got := strs(t, got["log"]); !slices.Equal(got, logger) {
		t.Errorf("log has %v, opsrunner.Logger declares %v", got, logger)
	}
	console := append(slices.Clone(logger), "log")
	slices.Sort(console)
	if got := strs(t, got["console"]); !slices.Equal(got, console) {
		t.Errorf("console has %v, the declarations give it %v", got, console)
	}
}

func TestAFilterSeesAMessageEventAndNoDelivery(t *testing.T) {
	files := map[string][]byte{
		scripts.ManifestFile: []byte("project: probe\noperations:\n  - name: probe\n    script: filter.js\n"),
		"filter.js": []byte(`function filter(event, ctx) {
  return typeof event.messageId === "string" && ctx.trigger === "listener" && ctx.message === undefined;
}
`),
	}
	p, err := scripts.Load("probe", 1, files, scripts.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := runtime.New(runtime.Config{NoPrewarm: true})
	t.Cleanup(e.Close)
	d := delivery{triggers.Message{ID: "m-1", Destination: "/queue/in", Attempt: 1, Body: []byte("x")}}
	ok, err := e.Filter(context.Background(), p, "filter.js", triggers.EventFor(d))
	if err != nil || !ok {
		t.Fatalf("filter = %v, %v: want a message event and a ctx without message, as opsrunner.Filter declares", ok, err)
	}
}

func TestEveryTriggerOfTheRuntimeIsDeclared(t *testing.T) {
	m := regexp.MustCompile(`type Trigger = ([^;]+);`).FindStringSubmatch(sdk.Declarations())
	if m == nil {
		t.Fatal("opsrunner.d.ts declares no opsrunner.Trigger")
	}
	for _, trigger := range []string{runtime.TriggerWebhook, runtime.TriggerListener, runtime.TriggerOperation, "schedule"} {
		if !strings.Contains(m[1], `"`+trigger+`"`) {
			t.Errorf("opsrunner.Trigger (%s) lacks %q", m[1], trigger)
		}
	}
}
