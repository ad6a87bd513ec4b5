package scripts

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseManifest(t *testing.T) {
	t.Parallel()
	m, err := ParseManifest([]byte(`
project: orders
operations:
  - name: Process Order
    script: operations/process-order.js
    timeout: 30s
    onSuccess: [Acknowledge Commit]
    webhook: {path: process-order, secretEnv: HOOK_SECRET}
  - name: Acknowledge Commit
    type: acknowledge
    action: jbxcommit
listeners:
  - name: orders-in
    destination: /queue/orders
    ackTimeout: 90
    consumers: 2
    durable: false
    operations: [Process Order]
    placement: {reservation: [a1, a2]}
    redelivery: {maxRedeliveries: -1, initialDelay: 1s, multiplier: 1.5, maxDelay: 1m}
egress: [api.example.com, "*.internal.example", 10.0.0.0/8, "localhost:9000"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if m.Project != "orders" || len(m.Operations) != 2 || len(m.Listeners) != 1 {
		t.Fatalf("got %+v", m)
	}
	o := m.Operations[0]
	if time.Duration(o.Timeout) != 30*time.Second || o.Webhook.Path != "process-order" || o.Webhook.SecretEnv != "HOOK_SECRET" || o.OnSuccess[0] != "Acknowledge Commit" {
		t.Errorf("operation: %+v", o)
	}
	if m.Operations[1].Action != "jbxcommit" {
		t.Errorf("ParseManifest must not normalise (Load does): %q", m.Operations[1].Action)
	}
	if strings.Join(m.Egress, " ") != "api.example.com *.internal.example 10.0.0.0/8 localhost:9000" {
		t.Errorf("egress: %q", m.Egress)
	}
	l := m.Listeners[0]
	if time.Duration(l.AckTimeout) != 90*time.Second || l.Consumers != 2 || l.Placement.Mode != PlaceReservation ||
		l.Redelivery.MaxRedeliveries != -1 || l.Redelivery.Multiplier != 1.5 || time.Duration(l.Redelivery.MaxDelay) != time.Minute {
		t.Errorf("listener: %+v", l)
	}
}

// TestParseManifestErrors: each shape problem is reported at its own
// line:col with its field path, and all of them together.
func TestParseManifestErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		want []string // each error's text, in order
	}{
		{name: "unknown top-level key", yaml: "project: p\nversion: 2\noperations: []\n",
			want: []string{`opsrunner.yaml:2:1: version: unknown key "version" (known keys: project, operations, listeners, egress`}},
		{name: "egress not a list", yaml: "project: p\negress: api.example.com\n",
			want: []string{`opsrunner.yaml:2:9: egress: expected a list, got a scalar`}},
		{name: "egress entry not a string", yaml: "project: p\negress:\n  - api.example.com\n  - {host: x}\n",
			want: []string{`opsrunner.yaml:4:5: egress[1]: expected a string, got a mapping`}},
		{name: "unknown operation key", yaml: "project: p\noperations:\n  - name: a\n    scirpt: a.js\n",
			want: []string{`opsrunner.yaml:4:5: operations[0].scirpt: unknown key "scirpt"`}},
		{name: "wrong case suggests", yaml: "project: p\noperations:\n  - name: a\n    onsuccess: [b]\n",
			want: []string{`opsrunner.yaml:4:5: operations[0].onsuccess: unknown key "onsuccess" (did you mean "onSuccess"?)`}},
		{name: "unknown nested key", yaml: "project: p\nlisteners:\n  - name: l\n    redelivery: {maxRetries: 3}\n",
			want: []string{`opsrunner.yaml:4:18: listeners[0].redelivery.maxRetries: unknown key "maxRetries"`}},
		{name: "bad duration", yaml: "project: p\noperations:\n  - name: a\n    timeout: soon\n",
			want: []string{`opsrunner.yaml:4:14: operations[0].timeout: invalid duration "soon"`}},
		{name: "negative duration", yaml: "project: p\nlisteners:\n  - ackTimeout: -5s\n",
			want: []string{`opsrunner.yaml:3:17: listeners[0].ackTimeout: duration "-5s" must not be negative`}},
		{name: "not an integer", yaml: "project: p\nlisteners:\n  - consumers: many\n",
			want: []string{`opsrunner.yaml:3:16: listeners[0].consumers: expected an integer, got "many"`}},
		{name: "not a bool", yaml: "project: p\nlisteners:\n  - durable: sometimes\n",
			want: []string{`listeners[0].durable: expected true or false, got "sometimes"`}},
		{name: "string list expected", yaml: "project: p\noperations:\n  - name: a\n    onSuccess: b\n",
			want: []string{`opsrunner.yaml:4:16: operations[0].onSuccess: expected a list, got a scalar`}},
		{name: "mapping expected", yaml: "project: p\noperations:\n  - just a name\n",
			want: []string{`opsrunner.yaml:3:5: operations[0]: expected a mapping, got a scalar`}},
		{name: "string expected", yaml: "project: {name: p}\n",
			want: []string{`opsrunner.yaml:1:10: project: expected a string, got a mapping`}},
		{name: "repeated key", yaml: "project: p\nproject: q\n",
			want: []string{`opsrunner.yaml:2:1: project: key "project" is repeated (first at line 1)`}},
		{name: "bad placement", yaml: "project: p\nlisteners:\n  - placement: {pinned: [a, b]}\n",
			want: []string{`opsrunner.yaml:3:25: listeners[0].placement: placement pinned needs exactly one agent, got 2`}},
		{name: "merge key", yaml: "project: p\noperations:\n  - <<: {name: a}\n",
			want: []string{`operations[0].<<: merge keys (<<) are not supported`}},
		{name: "several problems at once", yaml: "project: p\nextra: 1\noperations:\n  - name: a\n    timeout: x\n    colour: red\n",
			want: []string{`opsrunner.yaml:2:1: extra: unknown key`, `opsrunner.yaml:5:14: operations[0].timeout: invalid duration`, `opsrunner.yaml:6:5: operations[0].colour: unknown key`}},
		{name: "syntax error", yaml: "project: p\noperations:\n  - name: a\n   bad: [\n",
			want: []string{`opsrunner.yaml:`, `invalid YAML`}},
		{name: "tab indentation", yaml: "project: p\n\toperations: []\n",
			want: []string{`opsrunner.yaml:2:0: invalid YAML: found a tab character`}},
		{name: "empty", yaml: "", want: []string{`opsrunner.yaml: manifest is empty`}},
		{name: "comments only", yaml: "# nothing\n", want: []string{`opsrunner.yaml: manifest is empty`}},
		{name: "two documents", yaml: "project: p\n---\nproject: q\n", want: []string{`opsrunner.yaml:2:1: manifest must be a single YAML document`}},
		{name: "top level list", yaml: "- a\n", want: []string{`opsrunner.yaml:1:1: expected a mapping, got a list`}},
		{name: "alias loop", yaml: "project: p\noperations: &x\n  - onSuccess: *x\n", want: []string{`operations[0].onSuccess`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := ParseManifest([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("got %+v, want errors %q", m, tt.want)
			}
			var list []error
			var es Errors
			if errors.As(err, &es) {
				list = es
			} else {
				list = []error{err}
			}
			if len(tt.want) > 1 && tt.name != "syntax error" && len(list) != len(tt.want) {
				t.Fatalf("got %d errors (%v), want %d", len(list), err, len(tt.want))
			}
			text := err.Error()
			for i, w := range tt.want {
				if tt.name == "syntax error" {
					if !strings.Contains(text, w) {
						t.Fatalf("got %q, want it to contain %q", text, w)
					}
					continue
				}
				var ve *ValidationError
				if !errors.As(list[i], &ve) {
					t.Fatalf("error %d is %T, want *ValidationError", i, list[i])
				}
				if !strings.Contains(list[i].Error(), w) {
					t.Fatalf("error %d is %q, want it to contain %q", i, list[i], w)
				}
			}
		})
	}
}

func TestParseManifestAliases(t *testing.T) {
	t.Parallel()
	m, err := ParseManifest([]byte("project: p\noperations:\n  - name: a\n    onSuccess: &chain [b, c]\n    onFailure: *chain\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Operations[0].OnFailure; len(got) != 2 || got[1] != "c" {
		t.Fatalf("alias: got %q", got)
	}
	// A billion-laughs manifest is refused, not expanded.
	bomb := "project: p\nx: &s [" + strings.Repeat("x, ", 10000) + "x]\n" +
		"operations:\n  - &o {name: a, onSuccess: *s}\n  - " + strings.Repeat("*o\n  - ", 10000) + "*o\n"
	start := time.Now()
	_, err = ParseManifest([]byte(bomb))
	if err == nil || !strings.Contains(err.Error(), "expands too many aliases") {
		t.Fatalf("got %v, want the alias expansion refused", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("refusing the bomb took %v", d)
	}
}
