package scripts

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestLoadParsesExports(t *testing.T) {
	t.Parallel()
	p, err := Load("billing", 1, project(`project: billing
operations:
  - name: Charge
    script: operations/a.js
  - name: Refund
    script: operations/b.js
exports:
  - operation: Charge
    to: [shop, web.store]
  - {operation: Refund, to: ["*"]}
`), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Export{{Operation: "Charge", To: []string{"shop", "web.store"}}, {Operation: "Refund", To: []string{"*"}}}
	if got := p.Manifest.Exports; len(got) != 2 || got[0].Operation != want[0].Operation || !slices.Equal(got[0].To, want[0].To) ||
		got[1].Operation != want[1].Operation || !slices.Equal(got[1].To, want[1].To) {
		t.Fatalf("exports %+v, want %+v", got, want)
	}
}

// ExportsTo is what RunOperation checks for another project's operation.
func TestProjectExportsTo(t *testing.T) {
	t.Parallel()
	p := &Project{Name: "billing", Manifest: &Manifest{Project: "billing", Exports: []Export{
		{Operation: "Charge", To: []string{"shop"}},
		{Operation: "Refund", To: []string{AnyProject}},
	}}}
	for _, tt := range []struct {
		op, caller string
		want       bool
	}{
		{"Charge", "shop", true},
		{"Charge", "web", false},   // exported to another project
		{"Refund", "anyone", true}, // "*"
		{"Audit", "shop", false},   // not exported at all
		{"charge", "shop", false},  // names are exact
	} {
		if got := p.ExportsTo(tt.op, tt.caller); got != tt.want {
			t.Errorf("ExportsTo(%q, %q) = %v, want %v", tt.op, tt.caller, got, tt.want)
		}
	}
	if (&Project{Name: "x"}).ExportsTo("Charge", "shop") {
		t.Error("a project without a manifest exports nothing")
	}
}

// TestLoadRefusesBadExports: each problem at its own line:col.
func TestLoadRefusesBadExports(t *testing.T) {
	t.Parallel()
	_, err := Load("billing", 1, project(`project: billing
operations:
  - name: Charge
    script: operations/a.js
exports:
  - operation: Charge
    to: [shop]
  - operation: Nope
    to: [shop]
  - operation: Charge
    to: []
  - operation: Charge
    to: [Shop, "a/b", ""]
  - to: [shop]
`), LoadOptions{})
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("got %v, want Errors", err)
	}
	want := []string{
		`opsrunner.yaml:8:16: exports[1].operation: exports names unknown operation "Nope"`,
		`opsrunner.yaml:10:5: exports[2]: export of "Charge" needs to: the projects that may call it, or "*" for any project`,
		`opsrunner.yaml:13:10: exports[3].to[0]: project name "Shop" holds 'S' at byte 0`,
		`opsrunner.yaml:13:16: exports[3].to[1]: project name "a/b" holds '/' at byte 1`,
		`opsrunner.yaml:13:23: exports[3].to[2]: project name "" is empty`,
		`opsrunner.yaml:14:5: exports[4]: an export needs an operation: {operation: Name, to: [project, ...]}`,
	}
	if len(es) != len(want) {
		t.Fatalf("got %d errors (%v), want %d", len(es), err, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(es[i].Error(), w) {
			t.Errorf("error %d is %q, want %q", i, es[i], w)
		}
	}
}
