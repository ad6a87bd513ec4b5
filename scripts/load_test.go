package scripts

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

const okJS = "function handle(event, ctx) { return {ok: true}; }\n"

// project returns a bundle with manifest and, unless given, the scripts
// a.js, b.js, filter.js under operations/ that compile.
func project(manifest string, extra ...string) map[string][]byte {
	files := map[string][]byte{
		ManifestFile:           []byte(manifest),
		"operations/a.js":      []byte(okJS),
		"operations/b.js":      []byte(okJS),
		"operations/filter.js": []byte("function filter(event) { return true; }\n"),
	}
	for i := 0; i+1 < len(extra); i += 2 {
		files[extra[i]] = []byte(extra[i+1])
	}
	return files
}

func TestLoadDefaultsAndLookups(t *testing.T) {
	t.Parallel()
	p, err := Load("orders", 3, project(`
project: orders
operations:
  - name: Process Order
    script: ./operations/a.js
    onSuccess: [Acknowledge Commit]
    onFailure: [Acknowledge Rollback]
    webhook: {}
  - name: Price
    script: operations/b.js
    webhook: {path: price}
  - name: Acknowledge Commit
    type: acknowledge
    action: jbxCOMMIT
  - name: Acknowledge Rollback
    type: acknowledge
    action: JBXRollback
listeners:
  - name: orders-in
    destination: /queue/orders
    operations: [Process Order]
  - name: events
    destination: /topic/events
    filter: operations/filter.js
    durable: true
    subscriberName: sub
    operations: [Price]
    redelivery: {maxRedeliveries: 0, deadLetter: /queue/dead}
`), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "orders" || p.Version != 3 || p.CreatedAt.IsZero() {
		t.Errorf("project header: %q v%d %v", p.Name, p.Version, p.CreatedAt)
	}
	op, ok := p.Operation("Process Order")
	if !ok || op.Type != TypeScript || op.Script != "operations/a.js" || op.EffectiveTimeout() != DefaultOperationTimeout {
		t.Fatalf("Process Order: %+v", op)
	}
	if got := op.WebhookPath(); got != "Process%20Order" {
		t.Errorf("default webhook path: %q", got)
	}
	for _, path := range []string{"Process%20Order", "Process Order"} {
		if o, ok := p.WebhookOperation(path); !ok || o != op {
			t.Errorf("WebhookOperation(%q) = %v, %v", path, o, ok)
		}
	}
	if o, ok := p.WebhookOperation("price"); !ok || o.Name != "Price" {
		t.Errorf("WebhookOperation(price) = %v, %v", o, ok)
	}
	if _, ok := p.WebhookOperation("Acknowledge%20Commit"); ok {
		t.Error("an operation without a webhook must not be found by path")
	}
	if ack, _ := p.Operation("Acknowledge Commit"); ack.Action != ActionCommit || p.Program(ack) != nil {
		t.Errorf("acknowledge action not normalised: %q", ack.Action)
	}
	if p.Program(op) == nil || p.Programs["operations/filter.js"] == nil || len(p.Programs) != 3 {
		t.Errorf("programs: %v", p.Programs)
	}
	in, ok := p.Listener("orders-in")
	want := Listener{Name: "orders-in", Destination: "/queue/orders", Connection: "default", AckMode: AckOnSuccess,
		AckTimeout: Duration(DefaultAckTimeout), Consumers: 1, Operations: []string{"Process Order"},
		Redelivery: Redelivery{MaxRedeliveries: DefaultMaxRedeliveries, InitialDelay: Duration(DefaultInitialDelay),
			Multiplier: DefaultMultiplier, MaxDelay: Duration(DefaultMaxDelay), DeadLetter: "/queue/orders.DLQ"},
		Placement: Placement{Mode: PlaceAny}, Mode: ModePerMessage}
	if !ok || !reflect.DeepEqual(*in, want) {
		t.Errorf("listener defaults:\n got %+v\nwant %+v", in, want)
	}
	ev, _ := p.Listener("events")
	if ev.Fanout != FanoutOnce || ev.Redelivery.MaxRedeliveries != 0 || ev.Redelivery.DeadLetter != "/queue/dead" {
		t.Errorf("topic listener: fanout %q, redelivery %+v (an explicit maxRedeliveries: 0 is kept)", ev.Fanout, ev.Redelivery)
	}
	if _, ok := p.Listener("nope"); ok {
		t.Error("unknown listener found")
	}

	// The same lookups work on a hand-built project (no indexes).
	hand := &Project{Name: "orders", Manifest: p.Manifest}
	if o, ok := hand.WebhookOperation("Process Order"); !ok || o.Name != "Process Order" {
		t.Error("hand-built WebhookOperation")
	}
	if _, ok := hand.Operation("Price"); !ok {
		t.Error("hand-built Operation")
	}
	if _, ok := hand.Listener("events"); !ok {
		t.Error("hand-built Listener")
	}
}

// TestLoadValidation lists every deploy rule: each manifest breaks one, and
// Load reports it at the manifest's line:col.
func TestLoadValidation(t *testing.T) {
	t.Parallel()
	const head = "project: p\noperations:\n" // operations start on line 3
	const ops = head + "  - name: A\n    script: operations/a.js\n  - name: B\n    script: operations/b.js\n"
	// listeners start on line 8 when appended to ops
	const lis = ops + "listeners:\n"
	tests := []struct {
		name     string
		deployAs string // default "p"
		manifest string
		want     string // substring of the single error's text, position included
	}{
		{name: "project missing", manifest: "operations:\n  - name: A\n    script: operations/a.js\n", want: "opsrunner.yaml:1:1: project: project is required"},
		{name: "project differs from the URL", deployAs: "q", manifest: ops, want: `opsrunner.yaml:1:10: project: project "p" does not match the name it is deployed as, "q"`},
		{name: "project with slash", deployAs: "a/b", manifest: strings.Replace(ops, "project: p", "project: a/b", 1), want: `must not contain "/"`},
		{name: "no operations", manifest: "project: p\n", want: "at least one operation is required"},
		{name: "operation name empty", manifest: head + "  - script: operations/a.js\n", want: "opsrunner.yaml:3:5: operations[0].name: operation name: must not be empty"},
		{name: "operation name blank", manifest: head + "  - name: \"  \"\n    script: operations/a.js\n", want: "3:11: operations[0].name: operation name: must not be empty"},
		{name: "operation name control char", manifest: head + "  - name: \"a\\tb\"\n    script: operations/a.js\n", want: "control characters"},
		{name: "duplicate operation", manifest: ops + "  - name: A\n    script: operations/b.js\n", want: `opsrunner.yaml:7:11: operations[2].name: duplicate operation name "A" (also operations[0])`},
		{name: "unknown type", manifest: head + "  - name: A\n    type: lambda\n", want: `4:11: operations[0].type: unknown operation type "lambda"`},
		{name: "script missing", manifest: head + "  - name: A\n", want: `3:5: operations[0]: operation "A" needs a script`},
		{name: "script not in bundle", manifest: head + "  - name: A\n    script: operations/zz.js\n", want: `4:13: operations[0].script: script "operations/zz.js" is not in the bundle`},
		{name: "script not .js", manifest: head + "  - name: A\n    script: opsrunner.yaml\n", want: `must be a .js file`},
		{name: "script escapes the bundle", manifest: head + "  - name: A\n    script: ../a.js\n", want: `must be a relative path inside the bundle`},
		{name: "script op with action", manifest: head + "  - name: A\n    script: operations/a.js\n    action: JBXCommit\n", want: `5:13: operations[0].action: action is only for operations of type acknowledge`},
		{name: "acknowledge without action", manifest: head + "  - name: A\n    type: acknowledge\n", want: `acknowledge operation "A" needs an action: JBXCommit or JBXRollback`},
		{name: "acknowledge bad action", manifest: head + "  - name: A\n    type: acknowledge\n    action: commit\n", want: `5:13: operations[0].action: invalid acknowledge action "commit"`},
		{name: "acknowledge with script", manifest: head + "  - name: A\n    type: acknowledge\n    action: JBXCommit\n    script: operations/a.js\n", want: `6:13: operations[0].script: an acknowledge operation takes no script`},
		{name: "zero timeout", manifest: head + "  - name: A\n    script: operations/a.js\n    timeout: 0s\n", want: `5:14: operations[0].timeout: timeout must be more than 0 and at most 1h, got 0s`},
		{name: "timeout over an hour", manifest: head + "  - name: A\n    script: operations/a.js\n    timeout: 61m\n", want: `timeout must be more than 0 and at most 1h, got 1h1m`},
		{name: "onSuccess unknown", manifest: ops + "  - name: C\n    script: operations/a.js\n    onSuccess: [A, Nope]\n", want: `9:20: operations[2].onSuccess[1]: onSuccess names unknown operation "Nope"`},
		{name: "onFailure unknown", manifest: head + "  - name: A\n    script: operations/a.js\n    onFailure:\n      - Missing\n", want: `6:9: operations[0].onFailure[0]: onFailure names unknown operation "Missing"`},
		{name: "chain loops", manifest: head + "  - name: A\n    script: operations/a.js\n    onSuccess: [B]\n  - name: B\n    script: operations/b.js\n    onFailure: [A]\n", want: `operation chain loops: A → B → A`},
		{name: "chain to itself", manifest: head + "  - name: A\n    script: operations/a.js\n    onFailure: [A]\n", want: `operation chain loops: A → A`},
		{name: "webhook path with slash", manifest: head + "  - name: A\n    script: operations/a.js\n    webhook: {path: a/b}\n", want: `5:21: operations[0].webhook.path: webhook path "a/b" is not a valid URL path segment`},
		{name: "webhook path with space", manifest: head + "  - name: A\n    script: operations/a.js\n    webhook: {path: a b}\n", want: `not a valid URL path segment`},
		{name: "webhook path dot-dot", manifest: head + "  - name: A\n    script: operations/a.js\n    webhook: {path: ..}\n", want: `not a valid URL path segment`},
		{name: "webhook path duplicate", manifest: ops + "    webhook: {path: x}\n  - name: C\n    script: operations/a.js\n    webhook: {path: x}\n", want: `10:21: operations[2].webhook.path: webhook path "x" is already used by operation "B"`},
		{name: "default path clashes with explicit", manifest: head + "  - name: A B\n    script: operations/a.js\n    webhook: {}\n  - name: C\n    script: operations/a.js\n    webhook: {path: A%20B}\n", want: `not a valid URL path segment`},
		{name: "secretEnv invalid", manifest: head + "  - name: A\n    script: operations/a.js\n    webhook: {secretEnv: 1-SECRET}\n", want: `5:26: operations[0].webhook.secretEnv: secretEnv "1-SECRET" is not a valid environment variable name`},
		{name: "listener name empty", manifest: lis + "  - destination: /queue/x\n    operations: [A]\n", want: `8:5: listeners[0].name: listener name: must not be empty`},
		{name: "listener name with slash", manifest: lis + "  - name: a/b\n    destination: /queue/x\n    operations: [A]\n", want: `listener name "a/b" must not contain "/"`},
		{name: "listener duplicate", manifest: lis + "  - name: l\n    destination: /queue/x\n    operations: [A]\n  - name: l\n    destination: /queue/y\n    operations: [A]\n", want: `11:11: listeners[1].name: duplicate listener name "l" (also listeners[0])`},
		{name: "destination kind", manifest: lis + "  - name: l\n    destination: orders\n    operations: [A]\n", want: `9:18: listeners[0].destination: destination "orders" must start with /queue/ or /topic/`},
		{name: "destination empty name", manifest: lis + "  - name: l\n    destination: /queue/\n    operations: [A]\n", want: `must start with /queue/ or /topic/`},
		{name: "ackMode unknown", manifest: lis + "  - name: l\n    destination: /queue/x\n    ackMode: manual\n    operations: [A]\n", want: `10:14: listeners[0].ackMode: unknown ackMode "manual"`},
		{name: "ackTimeout zero", manifest: lis + "  - name: l\n    destination: /queue/x\n    ackTimeout: 0\n    operations: [A]\n", want: `listeners[0].ackTimeout: ackTimeout must be more than 0`},
		{name: "consumers negative", manifest: lis + "  - name: l\n    destination: /queue/x\n    consumers: -1\n    operations: [A]\n", want: `10:16: listeners[0].consumers: consumers must be between 0 and 256, got -1`},
		{name: "consumers too many", manifest: lis + "  - name: l\n    destination: /queue/x\n    consumers: 257\n    operations: [A]\n", want: `consumers must be between 0 and 256, got 257`},
		{name: "prefetch negative", manifest: lis + "  - name: l\n    destination: /queue/x\n    prefetch: -2\n    operations: [A]\n", want: `listeners[0].prefetch: prefetch must not be negative`},
		{name: "no operations", manifest: lis + "  - name: l\n    destination: /queue/x\n", want: `8:5: listeners[0].operations: listener "l" needs at least one operation`},
		{name: "unknown bound operation", manifest: lis + "  - name: l\n    destination: /queue/x\n    operations: [A, Z]\n", want: `10:21: listeners[0].operations[1]: listener "l" names unknown operation "Z"`},
		{name: "operation bound twice", manifest: lis + "  - name: l\n    destination: /queue/x\n    operations: [A, A]\n", want: `names operation "A" twice`},
		{name: "durable on a queue", manifest: lis + "  - name: l\n    destination: /queue/x\n    durable: true\n    operations: [A]\n", want: `10:14: listeners[0].durable: durable subscriptions are only for topics`},
		{name: "subscriberName without durable", manifest: lis + "  - name: l\n    destination: /topic/x\n    subscriberName: s\n    operations: [A]\n", want: `subscriberName needs durable: true`},
		{name: "filter not in bundle", manifest: lis + "  - name: l\n    destination: /queue/x\n    filter: operations/nope.js\n    operations: [A]\n", want: `10:13: listeners[0].filter: script "operations/nope.js" is not in the bundle`},
		{name: "filter not js", manifest: lis + "  - name: l\n    destination: /queue/x\n    filter: opsrunner.yaml\n    operations: [A]\n", want: `must be a .js file`},
		{name: "maxRedeliveries below -1", manifest: lis + "  - name: l\n    destination: /queue/x\n    operations: [A]\n    redelivery: {maxRedeliveries: -2}\n", want: `11:35: listeners[0].redelivery.maxRedeliveries: maxRedeliveries must be -1`},
		{name: "multiplier below 1", manifest: lis + "  - name: l\n    destination: /queue/x\n    operations: [A]\n    redelivery: {multiplier: 0.5}\n", want: `multiplier must be at least 1, got 0.5`},
		{name: "maxDelay below initialDelay", manifest: lis + "  - name: l\n    destination: /queue/x\n    operations: [A]\n    redelivery: {initialDelay: 10s, maxDelay: 5s}\n", want: `maxDelay 5s is less than initialDelay 10s`},
		{name: "maxDelay 0 below the default initialDelay", manifest: lis + "  - name: l\n    destination: /queue/x\n    operations: [A]\n    redelivery: {maxDelay: 0}\n", want: `maxDelay 0s is less than initialDelay 1s`},
		{name: "deadLetter kind", manifest: lis + "  - name: l\n    destination: /queue/x\n    operations: [A]\n    redelivery: {deadLetter: dlq}\n", want: `deadLetter "dlq" must start with /queue/ or /topic/`},
		{name: "deadLetter loops", manifest: lis + "  - name: l\n    destination: /queue/x\n    operations: [A]\n    redelivery: {deadLetter: /queue/x}\n", want: `deadLetter must differ`},
		{name: "retention below -1", manifest: lis + "  - name: l\n    destination: /queue/x\n    operations: [A]\n    redelivery: {retention: -5}\n", want: `retention must be -1`},
		{name: "fanout on a queue", manifest: lis + "  - name: l\n    destination: /queue/x\n    fanout: each\n    operations: [A]\n", want: `10:13: listeners[0].fanout: fanout is only for topics`},
		{name: "fanout unknown", manifest: lis + "  - name: l\n    destination: /topic/x\n    fanout: all\n    operations: [A]\n", want: `unknown fanout "all"`},
		{name: "mode unknown", manifest: lis + "  - name: l\n    destination: /queue/x\n    mode: stream\n    operations: [A]\n", want: `10:11: listeners[0].mode: unknown mode "stream"`},
		{name: "callbackTimeout zero", manifest: lis + "  - name: l\n    destination: /queue/x\n    mode: batch\n    callbackTimeout: 0s\n    operations: [A]\n", want: `callbackTimeout must be more than 0`},
		{name: "dedupHeader blank", manifest: lis + "  - name: l\n    destination: /queue/x\n    dedupHeader: \" \"\n    operations: [A]\n", want: `dedupHeader " " is not a valid header name`},
		{name: "operation timeout over ackTimeout",
			manifest: head + "  - name: Process Order\n    script: operations/a.js\n    timeout: 90s\nlisteners:\n  - name: orders-in\n    destination: /queue/orders\n    ackTimeout: 60s\n    operations: [Process Order]\n",
			want:     `opsrunner.yaml:10:18: listeners[0].operations[0]: listener orders-in: operation "Process Order" timeout 1m30s exceeds the listener's ackTimeout 1m; raise ackTimeout or lower the timeout`},
		{name: "default operation timeout over a short ackTimeout",
			manifest: lis + "  - name: l\n    destination: /queue/x\n    ackTimeout: 10s\n    operations: [A]\n",
			want:     `operation "A" timeout 30s exceeds the listener's ackTimeout 10s`},
		{name: "chain over ackTimeout",
			manifest: head + "  - name: A\n    script: operations/a.js\n    timeout: 40s\n    onSuccess: [B]\n  - name: B\n    script: operations/b.js\n    timeout: 30s\nlisteners:\n  - name: l\n    destination: /queue/x\n    operations: [A]\n",
			want:     `operation "A" with its onSuccess/onFailure chain may take 1m10s, more than the listener's ackTimeout 1m`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			name := tt.deployAs
			if name == "" {
				name = "p"
			}
			p, err := Load(name, 1, project(tt.manifest), LoadOptions{})
			if err == nil {
				t.Fatalf("loaded %+v, want an error containing %q", p.Manifest, tt.want)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("got %T, want Errors", err)
			}
			if len(es) != 1 || !strings.Contains(es[0].Error(), tt.want) {
				t.Fatalf("got %d errors:\n%v\nwant one containing %q", len(es), strings.ReplaceAll(err.Error(), "; ", "\n"), tt.want)
			}
			var ve *ValidationError
			if !errors.As(es[0], &ve) || ve.File != ManifestFile {
				t.Fatalf("got %T %v, want a *ValidationError in %s", es[0], es[0], ManifestFile)
			}
		})
	}
}

// TestRedeliveryDefaults: a policy gets a default only for what it leaves
// out. An explicit 0 keeps its meaning (redeliver at once), and the default
// maxDelay never caps a longer initialDelay.
func TestRedeliveryDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, redelivery string
		initial, max     time.Duration
		multiplier       float64
	}{
		{"all left out", "{}", time.Second, time.Minute, 2},
		{"initialDelay 0 redelivers at once", "{initialDelay: 0}", 0, time.Minute, 2},
		{"no backoff at all", "{initialDelay: 0s, maxDelay: 0s}", 0, 0, 2},
		{"a longer initialDelay raises the default maxDelay", "{initialDelay: 5m}", 5 * time.Minute, 5 * time.Minute, 2},
		{"all given", "{initialDelay: 2s, multiplier: 1, maxDelay: 10s}", 2 * time.Second, 10 * time.Second, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := Load("p", 1, project("project: p\noperations:\n  - name: A\n    script: operations/a.js\nlisteners:\n  - name: l\n    destination: /queue/x\n    operations: [A]\n    redelivery: "+tt.redelivery+"\n"), LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			l, _ := p.Listener("l")
			r := l.Redelivery
			if time.Duration(r.InitialDelay) != tt.initial || time.Duration(r.MaxDelay) != tt.max || r.Multiplier != tt.multiplier {
				t.Errorf("initialDelay %s, maxDelay %s, multiplier %g; want %s, %s, %g", r.InitialDelay, r.MaxDelay, r.Multiplier, tt.initial, tt.max, tt.multiplier)
			}
		})
	}
}

func TestLoadAcceptsWithinBounds(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, manifest string }{
		{"timeouts at their bounds", "project: p\noperations:\n  - name: A\n    script: operations/a.js\n    timeout: 1h\nlisteners:\n  - name: l\n    destination: /queue/x\n    ackTimeout: 24h\n    consumers: 256\n    operations: [A]\n"},
		{"chain of acknowledges costs nothing", "project: p\noperations:\n  - name: A\n    script: operations/a.js\n    timeout: 60s\n    onSuccess: [C]\n  - name: C\n    type: acknowledge\n    action: JBXCommit\nlisteners:\n  - name: l\n    destination: /queue/x\n    operations: [A]\n"},
		{"auto ack is not bounded", "project: p\noperations:\n  - name: A\n    script: operations/a.js\n    timeout: 5m\nlisteners:\n  - name: l\n    destination: /queue/x\n    ackMode: auto\n    operations: [A]\n"},
		{"shared chain (diamond)", "project: p\noperations:\n  - name: A\n    script: operations/a.js\n    timeout: 5s\n    onSuccess: [B, C]\n  - name: B\n    script: operations/a.js\n    timeout: 5s\n    onSuccess: [D]\n  - name: C\n    script: operations/a.js\n    timeout: 5s\n    onSuccess: [D]\n  - name: D\n    script: operations/b.js\n    timeout: 5s\nlisteners:\n  - name: l\n    destination: /topic/x\n    durable: true\n    subscriberName: s\n    fanout: each\n    mode: batch\n    callbackTimeout: 5m\n    placement: {pinned: [a1]}\n    operations: [A, D]\n"},
		{"maxRedeliveries -1 and retention -1", "project: p\noperations:\n  - name: A\n    script: operations/a.js\nlisteners:\n  - name: l\n    destination: /queue/x\n    operations: [A]\n    redelivery: {maxRedeliveries: -1, retention: -1, multiplier: 1, initialDelay: 1s, maxDelay: 1s}\n"},
		{"names are free text", "project: p\noperations:\n  - name: \"4. JMS Acknowledge (Commit) / über\"\n    type: acknowledge\n    action: JBXCommit\n    webhook: {path: \"a-b_c.d~e\"}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := Load("p", 1, project(tt.manifest), LoadOptions{}); err != nil {
				t.Fatal(strings.ReplaceAll(err.Error(), "; ", "\n"))
			}
		})
	}
}

func TestLoadReportsEverything(t *testing.T) {
	t.Parallel()
	_, err := Load("p", 1, project(`project: p
operations:
  - name: A
    script: operations/missing.js
    onSuccess: [Nope]
  - name: B
    script: operations/bad.js
listeners:
  - name: l
    destination: queue
    operations: [A]
`, "operations/bad.js", "function handle() {\n  return 1 +;\n}\n"), LoadOptions{})
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("got %v", err)
	}
	want := []string{
		`opsrunner.yaml:4:13: operations[0].script: script "operations/missing.js" is not in the bundle`,
		`opsrunner.yaml:5:17: operations[0].onSuccess[0]: onSuccess names unknown operation "Nope"`,
		`opsrunner.yaml:10:18: listeners[0].destination: destination "queue" must start with /queue/ or /topic/`,
		`operations/bad.js:2:13: SyntaxError: Unexpected token ;`,
	}
	if len(es) != len(want) {
		t.Fatalf("got %d errors:\n%s", len(es), strings.ReplaceAll(err.Error(), "; ", "\n"))
	}
	for i := range want {
		if es[i].Error() != want[i] {
			t.Errorf("error %d:\n got %s\nwant %s", i, es[i], want[i])
		}
	}
}

func TestLoadBundleProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string][]byte
		want  string
	}{
		{"missing manifest", map[string][]byte{"operations/a.js": []byte(okJS)}, "opsrunner.yaml: the bundle has no opsrunner.yaml at its root"},
		{"manifest misnamed", map[string][]byte{"opsrunner.yml": []byte("project: p\n")}, "rename it to opsrunner.yaml"},
		{"unknown manifest key", project("project: p\noperations:\n  - name: A\n    script: operations/a.js\n    retries: 3\n"), `opsrunner.yaml:5:5: operations[0].retries: unknown key "retries"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load("p", 1, tt.files, LoadOptions{})
			var es Errors
			if !errors.As(err, &es) || len(es) != 1 || !strings.Contains(es[0].Error(), tt.want) {
				t.Fatalf("got %v, want one error containing %q", err, tt.want)
			}
		})
	}
}

// TestLoadScriptSyntaxErrors: a syntax error is a *ScriptError at the
// user's own line:col, whatever the module wrapper adds.
func TestLoadScriptSyntaxErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, src string
		line, col int
		msg       string
	}{
		{"operator in the middle of line 3", "function handle(event) {\n  var a = 1;\n  a = a +* 2;\n}\n", 3, 10, "Unexpected token *"},
		{"illegal character on line 3", "// one\n// two\nvar a = @;\n", 3, 9, "Unexpected token ILLEGAL"},
		{"first line keeps user columns", "var x = );", 1, 9, "Unexpected token )"},
		{"unclosed function", "function handle(event) {\n  return 1;\n", 3, 1, "Unexpected"},
		{"unterminated string", "var s = 'abc\n", 1, 9, "ILLEGAL"},
		{"closing the wrapper", "}); (function() {", 1, 1, "unbalanced braces"},
		{"empty script compiles", "", 0, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load("p", 1, project("project: p\noperations:\n  - name: A\n    script: operations/x.js\n", "operations/x.js", tt.src), LoadOptions{})
			if tt.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var se *ScriptError
			if !errors.As(err, &se) {
				t.Fatalf("got %v, want a *ScriptError", err)
			}
			if se.File != "operations/x.js" || se.Line != tt.line || se.Column != tt.col || !strings.Contains(se.Message, tt.msg) {
				t.Fatalf("got %s:%d:%d %q, want operations/x.js:%d:%d containing %q", se.File, se.Line, se.Column, se.Message, tt.line, tt.col, tt.msg)
			}
		})
	}
}

// TestCompilePosition3x7 pins the exact mapping with a token at 3:7.
func TestCompilePosition3x7(t *testing.T) {
	t.Parallel()
	_, err := Compile("op.js", []byte("var a;\nvar b;\nvar c )= 1;\n"))
	var se *ScriptError
	if !errors.As(err, &se) || se.Line != 3 || se.Column != 7 {
		t.Fatalf("got %v, want op.js:3:7", err)
	}
	if got := se.Error(); !strings.HasPrefix(got, "op.js:3:7: SyntaxError: ") {
		t.Fatalf("Error() = %q", got)
	}
}

func TestLoadCheckListener(t *testing.T) {
	t.Parallel()
	var seen []string
	opts := LoadOptions{CheckListener: func(l *Listener) error {
		seen = append(seen, l.Name+"@"+l.Connection)
		if l.Connection != "default" {
			return fmt.Errorf("unknown connection %q", l.Connection)
		}
		if l.Selector != "" {
			return fmt.Errorf("connection %q does not support selectors", l.Connection)
		}
		return nil
	}}
	_, err := Load("p", 1, project(`project: p
operations:
  - name: A
    script: operations/a.js
listeners:
  - name: ok
    destination: /queue/a
    operations: [A]
  - name: remote
    destination: /queue/b
    connection: activemq
    operations: [A]
  - name: selective
    destination: /queue/c
    selector: "type = 'x'"
    operations: [A]
`), opts)
	want := []string{
		`opsrunner.yaml:9:5: listeners[1]: listener "remote": unknown connection "activemq"`,
		`opsrunner.yaml:13:5: listeners[2]: listener "selective": connection "default" does not support selectors`,
	}
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 || es[0].Error() != want[0] || es[1].Error() != want[1] {
		t.Fatalf("got %v\nwant %q", err, want)
	}
	if strings.Join(seen, ",") != "ok@default,remote@activemq,selective@default" {
		t.Fatalf("CheckListener saw %q", seen)
	}
}

func TestOperationWebhookPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		op   Operation
		want string
	}{
		{Operation{Name: "hello"}, "hello"},
		{Operation{Name: "Process Order"}, "Process%20Order"},
		{Operation{Name: "Process Order", Webhook: &Webhook{Path: "process-order"}}, "process-order"},
		{Operation{Name: "a/b", Webhook: &Webhook{}}, "a%2Fb"},
	}
	for _, tt := range tests {
		if got := tt.op.WebhookPath(); got != tt.want {
			t.Errorf("WebhookPath(%q) = %q, want %q", tt.op.Name, got, tt.want)
		}
	}
}
