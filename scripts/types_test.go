package scripts

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestDurationYAML(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "30s", want: 30 * time.Second},
		{in: "1m", want: time.Minute},
		{in: "1500ms", want: 1500 * time.Millisecond},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "30", want: 30 * time.Second},
		{in: "1.5", want: 1500 * time.Millisecond},
		{in: `"45"`, want: 45 * time.Second},
		{in: "0", want: 0},
		{in: "-5s", wantErr: "1:4: d: duration \"-5s\" must not be negative"},
		{in: "-1", wantErr: "must not be negative"},
		{in: "soon", wantErr: "1:4: d: invalid duration \"soon\""},
		{in: "5 s", wantErr: "invalid duration"},
		{in: "[1]", wantErr: "expected a duration"},
		{in: ".inf", wantErr: "invalid duration"},
		{in: "inf", wantErr: "out of range"},
		{in: "1e30", wantErr: "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			var v struct {
				D Duration `yaml:"d"`
			}
			w := &walker{nodes: nodeIndex{}}
			var n yaml.Node
			if err := yaml.Unmarshal([]byte("d: "+tt.in), &n); err != nil {
				t.Fatal(err)
			}
			w.decode(n.Content[0], reflect.ValueOf(&v).Elem(), "")
			if tt.wantErr != "" {
				if len(w.errs) != 1 || !strings.Contains(w.errs[0].Error(), tt.wantErr) {
					t.Fatalf("errors %v, want one containing %q", w.errs, tt.wantErr)
				}
				return
			}
			if len(w.errs) > 0 {
				t.Fatalf("unexpected errors: %v", w.errs)
			}
			if time.Duration(v.D) != tt.want {
				t.Fatalf("got %v, want %v", time.Duration(v.D), tt.want)
			}
		})
	}
}

func TestDurationJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d    time.Duration
		json string
	}{
		{30 * time.Second, `"30s"`},
		{time.Minute, `"1m"`},
		{90 * time.Second, `"1m30s"`},
		{2 * time.Hour, `"2h"`},
		{1500 * time.Millisecond, `"1.5s"`},
		{0, `"0s"`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(Duration(tt.d))
		if err != nil || string(b) != tt.json {
			t.Errorf("Marshal(%v) = %s, %v; want %s", tt.d, b, err, tt.json)
		}
		var back Duration
		if err := json.Unmarshal(b, &back); err != nil || time.Duration(back) != tt.d {
			t.Errorf("Unmarshal(%s) = %v, %v; want %v", b, time.Duration(back), err, tt.d)
		}
	}
	var d Duration
	if err := json.Unmarshal([]byte(`12`), &d); err != nil || time.Duration(d) != 12*time.Second {
		t.Errorf("a JSON number is seconds: got %v, %v", time.Duration(d), err)
	}
	for _, bad := range []string{`"x"`, `"-1s"`, `true`} {
		if err := json.Unmarshal([]byte(bad), &d); err == nil {
			t.Errorf("Unmarshal(%s) succeeded, want an error", bad)
		}
	}
}

func TestPlacementYAML(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Placement
		wantErr string
	}{
		{in: "any", want: Placement{Mode: PlaceAny}},
		{in: "{pinned: [a1]}", want: Placement{Mode: PlacePinned, Agents: []string{"a1"}}},
		{in: "{reservation: [a1, a2]}", want: Placement{Mode: PlaceReservation, Agents: []string{"a1", "a2"}}},
		{in: "\n  reservation:\n    - a1\n", want: Placement{Mode: PlaceReservation, Agents: []string{"a1"}}},
		{in: "{pinned: [a1, a2]}", wantErr: "1:13: p: placement pinned needs exactly one agent, got 2"},
		{in: "{pinned: []}", wantErr: "exactly one agent"},
		{in: "{pinned: a1}", wantErr: "needs a list of agent ids"},
		{in: "{reservation: []}", wantErr: "at least one agent"},
		{in: "{reservation: [a, a]}", wantErr: "names agent \"a\" twice"},
		{in: "{reservation: [a, \"\"]}", wantErr: "agent id must be a non-empty string"},
		{in: "{sticky: [a]}", wantErr: "1:5: p: unknown placement \"sticky\""},
		{in: "{pinned: [a], reservation: [b]}", wantErr: "exactly one key"},
		{in: "everywhere", wantErr: "1:4: p: placement must be \"any\""},
		{in: "[any]", wantErr: "placement must be"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			var v struct {
				P Placement `yaml:"p"`
			}
			w := &walker{nodes: nodeIndex{}}
			var n yaml.Node
			if err := yaml.Unmarshal([]byte("p: "+tt.in), &n); err != nil {
				t.Fatal(err)
			}
			w.decode(n.Content[0], reflect.ValueOf(&v).Elem(), "")
			if tt.wantErr != "" {
				if len(w.errs) != 1 || !strings.Contains(w.errs[0].Error(), tt.wantErr) {
					t.Fatalf("errors %v, want one containing %q", w.errs, tt.wantErr)
				}
				return
			}
			if len(w.errs) > 0 {
				t.Fatalf("unexpected errors: %v", w.errs)
			}
			if !reflect.DeepEqual(v.P, tt.want) {
				t.Fatalf("got %+v, want %+v", v.P, tt.want)
			}
		})
	}
}

func TestParseAction(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"JBXCommit", ActionCommit, true},
		{"jbxcommit", ActionCommit, true},
		{"JBXCOMMIT", ActionCommit, true},
		{"JBXRollback", ActionRollback, true},
		{"jbxRollBack", ActionRollback, true},
		{"commit", "", false},
		{" JBXCommit", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, err := ParseAction(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseAction(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseReference(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ref, project, operation string
	}{
		{"Price Order", "", "Price Order"},
		{"billing/Charge Card", "billing", "Charge Card"},
		{"<TAG>Operations/4. JMS Acknowledge (Commit)</TAG>", "", "4. JMS Acknowledge (Commit)"},
		{"<tag>operations/Price Order</tag>", "", "Price Order"},
		{"  <TAG>Operations/Price Order</TAG>  ", "", "Price Order"},
		{"<TAG>Operations/a/b</TAG>", "", "a/b"},
		{"/leading", "", "/leading"},
		{"trailing/", "", "trailing/"},
		{"", "", ""},
	}
	for _, tt := range tests {
		p, o := ParseReference(tt.ref)
		if p != tt.project || o != tt.operation {
			t.Errorf("ParseReference(%q) = (%q, %q); want (%q, %q)", tt.ref, p, o, tt.project, tt.operation)
		}
	}
}

func TestResolveReference(t *testing.T) {
	t.Parallel()
	p := &Project{Name: "orders", Manifest: &Manifest{Project: "orders", Operations: []Operation{
		{Name: "Price Order"}, {Name: "in/out"},
	}}}
	tests := []struct {
		ref, project, operation string
	}{
		{"Price Order", "orders", "Price Order"},
		{"in/out", "orders", "in/out"}, // a local name with "/" wins
		{"billing/Charge", "billing", "Charge"},
		{"<TAG>Operations/Price Order</TAG>", "orders", "Price Order"},
		{"Missing", "orders", "Missing"},
	}
	for _, tt := range tests {
		pr, o := p.ResolveReference(tt.ref)
		if pr != tt.project || o != tt.operation {
			t.Errorf("ResolveReference(%q) = (%q, %q); want (%q, %q)", tt.ref, pr, o, tt.project, tt.operation)
		}
	}
}
