package runtime

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/opsrunner/opsrunner/scripts"
)

// exportingBilling is a project "billing" whose Charge is exported to
// project "shop" only, Refund to every project, and Audit to none; extra
// operations are added unexported.
func exportingBilling(t *testing.T, extra ...op) *scripts.Project {
	t.Helper()
	p := newProject(t, "billing", append([]op{
		{name: "Charge", src: `function handle(e) { return "charged " + e.amount }`},
		{name: "Refund", src: `function handle(e) { return "refunded " + e.amount }`},
		{name: "Audit", src: `function handle() { return "audited" }`}}, extra...)...)
	p.Manifest.Exports = []scripts.Export{
		{Operation: "Charge", To: []string{"shop"}},
		{Operation: "Refund", To: []string{scripts.AnyProject}},
	}
	return p
}

// A script calls another project's operation only when that project
// exports it to the caller's project; waiting or not, the rule is the same.
// Its own project's operations need no export.
func TestRunOperationAcrossProjectsNeedsAnExport(t *testing.T) {
	t.Parallel()
	billing := exportingBilling(t)
	disp := &fakeDispatcher{}
	e := newEngine(t, Config{Projects: projectSet{"billing": billing}, Dispatcher: disp})
	notExported := func(op, caller string) string {
		return fmt.Sprintf(`RunOperation: project "billing" does not export operation %q to project %q: add {operation: %s, to: [%s]} to exports in billing's opsrunner.yaml`,
			op, caller, op, caller)
	}
	tests := []struct {
		name, caller, ref string
		want              string // the wait=true result, or the message thrown
		async             bool   // wait=false succeeds (queued)
	}{
		{"exported to the caller", "shop", "billing/Charge", "charged 3", true},
		{"exported to every project", "web", "billing/Refund", "refunded 3", true},
		{"exported to another project", "web", "billing/Charge", notExported("Charge", "web"), false},
		{"not exported", "shop", "billing/Audit", notExported("Audit", "shop"), false},
		{"own project by name", "billing", "Audit", "audited", true},
		{"own project as project/name", "billing", "billing/Audit", "audited", true},
		{"unknown operation", "shop", "billing/Nope", `RunOperation: unknown operation "billing/Nope"`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := fmt.Sprintf(`function handle(e) {
  const call = (wait) => { try { return RunOperation(%q, wait, {amount: 3}) } catch (err) { return err.message } };
  return [call(true), call(false)];
}`, tt.ref)
			caller := newProject(t, tt.caller, op{name: "main", src: src})
			if tt.caller == "billing" {
				caller = exportingBilling(t, op{name: "main", src: src})
			}
			res := e.Run(context.Background(), Invocation{Project: caller, Operation: "main"})
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			got := res.value().([]any)
			if got[0] != tt.want {
				t.Errorf("RunOperation(%q, true) from %s: %v, want %q", tt.ref, tt.caller, got[0], tt.want)
			}
			queued := strings.HasPrefix(got[1].(string), "run-")
			if want := tt.want; !tt.async && got[1] != want {
				t.Errorf("RunOperation(%q, false) from %s: %v, want %q", tt.ref, tt.caller, got[1], want)
			} else if tt.async && !queued {
				t.Errorf("RunOperation(%q, false) from %s: %v, want a queued run id", tt.ref, tt.caller, got[1])
			}
		})
	}
}

// confineTo allows project "orders" the destinations under /queue/orders.
// only; every other project sends anywhere.
func confineTo(project, dest string) error {
	if project == "orders" && !strings.HasPrefix(dest, "/queue/orders.") {
		return fmt.Errorf("project %q may not send to %q: allowed destinations are /queue/orders.*", project, dest)
	}
	return nil
}

// A confined project's SendMessage outside its destinations throws a
// catchable Error and sends nothing, in a delivery as outside one.
func TestSendMessageIsConfined(t *testing.T) {
	t.Parallel()
	const src = `function handle() {
  const out = [];
  for (const d of ["/queue/orders.out", "/queue/billing.in"]) {
    try { SendMessage(d, "x"); out.push("sent " + d) } catch (e) { out.push(e.message) }
  }
  return out;
}`
	want := []any{"sent /queue/orders.out",
		`SendMessage: project "orders" may not send to "/queue/billing.in": allowed destinations are /queue/orders.*`}

	t.Run("outside a delivery", func(t *testing.T) {
		t.Parallel()
		snd := &fakeSender{}
		e := newEngine(t, Config{Sender: snd, Confine: confineTo})
		res := e.Run(context.Background(), Invocation{Project: newProject(t, "orders", op{name: "main", src: src}), Operation: "main"})
		if res.Err != nil || !reflect.DeepEqual(res.value(), want) {
			t.Fatalf("got %v, %v; want %v", res.value(), res.Err, want)
		}
		if len(snd.sent) != 1 || snd.sent[0].dest != "/queue/orders.out" {
			t.Fatalf("sent %+v, want only /queue/orders.out", snd.sent)
		}
	})
	t.Run("in a delivery", func(t *testing.T) {
		t.Parallel()
		msg := &fakeMessage{id: "m1"}
		e := newEngine(t, Config{Confine: confineTo})
		res := e.Run(context.Background(), Invocation{Project: newProject(t, "orders", op{name: "main", src: src}), Operation: "main", Message: msg})
		if res.Err != nil || !reflect.DeepEqual(res.value(), want) {
			t.Fatalf("got %v, %v; want %v", res.value(), res.Err, want)
		}
		if got := msg.log(); !reflect.DeepEqual(got, []string{"send /queue/orders.out x"}) {
			t.Fatalf("message log %v, want only the send to /queue/orders.out", got)
		}
	})
	t.Run("an unconfined project sends anywhere", func(t *testing.T) {
		t.Parallel()
		snd := &fakeSender{}
		e := newEngine(t, Config{Sender: snd, Confine: confineTo})
		res := e.Run(context.Background(), Invocation{Project: newProject(t, "shop", op{name: "main", src: src}), Operation: "main"})
		if want := []any{"sent /queue/orders.out", "sent /queue/billing.in"}; res.Err != nil || !reflect.DeepEqual(res.value(), want) {
			t.Fatalf("got %v, %v; want %v", res.value(), res.Err, want)
		}
	})
	t.Run("an uncaught refusal fails the run", func(t *testing.T) {
		t.Parallel()
		e := newEngine(t, Config{Sender: &fakeSender{}, Confine: confineTo})
		res := e.Run(context.Background(), Invocation{Project: newProject(t, "orders", op{name: "main", src: `function handle() { SendMessage("/topic/all", "x") }`}), Operation: "main"})
		if se := scriptErr(t, res.Err); !strings.Contains(se.Message, `may not send to "/topic/all"`) {
			t.Fatalf("error %q, want the refusal", se.Message)
		}
	})
}
