package scripts

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestLoadParsesEgress(t *testing.T) {
	t.Parallel()
	p, err := Load("shop", 1, project(`
project: shop
operations:
  - name: A
    script: operations/a.js
egress:
  - api.example.com
  - "*.internal.example:443"
  - 10.0.0.0/8
  - localhost:9000
`), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"api.example.com", "*.internal.example:443", "10.0.0.0/8", "localhost:9000"}
	if p.Egress == nil || !slices.Equal(p.Egress.Entries(), want) {
		t.Fatalf("Egress = %v, want %q", p.Egress, want)
	}

	// Without the key the project may connect nowhere, and the policy is
	// still there for the runtime to use.
	p, err = Load("shop", 1, project("project: shop\noperations:\n  - name: A\n    script: operations/a.js\n"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Egress == nil || len(p.Egress.Entries()) != 0 {
		t.Fatalf("Egress = %v, want an empty policy", p.Egress)
	}
}

// TestLoadRefusesBadEgressEntries: each bad entry is a deploy error at its
// own line:col.
func TestLoadRefusesBadEgressEntries(t *testing.T) {
	t.Parallel()
	_, err := Load("shop", 1, project(`project: shop
operations:
  - name: A
    script: operations/a.js
egress:
  - api.example.com
  - "*"
  - https://api.example.com/v1
  - 10.0.0.0/33
  - api.example.com:70000
  - ""
`), LoadOptions{})
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("got %v, want Errors", err)
	}
	want := []string{
		`opsrunner.yaml:7:5: egress[1]: entry "*" allows every host`,
		`opsrunner.yaml:8:5: egress[2]: entry "https://api.example.com/v1" is a URL: write its host only ("api.example.com")`,
		`opsrunner.yaml:9:5: egress[3]: entry "10.0.0.0/33" is not a valid address range`,
		`opsrunner.yaml:10:5: egress[4]: entry "api.example.com:70000" has port "70000": a port is a number from 1 to 65535`,
		`opsrunner.yaml:11:5: egress[5]: entry "" is empty`,
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
