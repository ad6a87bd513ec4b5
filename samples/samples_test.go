// Package samples holds runnable sample projects (one folder each); this
// test proves every sample bundles and loads cleanly.
package samples

import (
	"bytes"
	"os"
	"testing"

	"github.com/opsrunner/opsrunner/scripts"
)

func TestSamplesLoad(t *testing.T) {
	t.Parallel()
	want := map[string]struct{ ops, hooks, listeners, schedules []string }{
		"hello":     {ops: []string{"hello"}, hooks: []string{"hello"}},
		"heartbeat": {ops: []string{"Beat", "Daily Report"}, schedules: []string{"beat", "weekday-report"}},
		"orders":    {ops: []string{"Validate Order", "Price Order", "Record Order", "Report Failure"}, hooks: []string{"orders"}},
		"pricing":   {ops: []string{"Price Order"}, hooks: []string{"price"}},
		"jms-orders": {
			ops:       []string{"1. JMS Listen", "2. Business Logic", "3. JMS Acknowledge (Rollback)", "4. JMS Acknowledge (Commit)", "Customer Logic", "Send Order"},
			hooks:     []string{"send"},
			listeners: []string{"orders-in", "orders-v3"},
		},
	}
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		found++
		name := e.Name()
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			bundle, err := scripts.BundleDir(name)
			if err != nil {
				t.Fatal(err)
			}
			files, err := scripts.ReadBundle(bytes.NewReader(bundle), scripts.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			p, err := scripts.Load(name, 1, files, scripts.LoadOptions{})
			if err != nil {
				t.Fatalf("sample %s does not load: %v", name, err)
			}
			w, ok := want[name]
			if !ok {
				t.Fatalf("sample %s has no expectations in this test", name)
			}
			for _, o := range w.ops {
				if _, ok := p.Operation(o); !ok {
					t.Errorf("operation %q missing", o)
				}
			}
			for _, h := range w.hooks {
				if _, ok := p.WebhookOperation(h); !ok {
					t.Errorf("webhook %q missing", h)
				}
			}
			for _, l := range w.listeners {
				if _, ok := p.Listener(l); !ok {
					t.Errorf("listener %q missing", l)
				}
			}
			for _, s := range w.schedules {
				if _, ok := p.Schedule(s); !ok {
					t.Errorf("schedule %q missing", s)
				}
			}
		})
	}
	if found != len(want) {
		t.Errorf("found %d sample folders, want %d", found, len(want))
	}
}
