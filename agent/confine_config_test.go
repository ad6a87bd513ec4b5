package agent

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The projects section reads from YAML, and Validate checks its project
// names and destination patterns.
func TestConfigProjectsDestinations(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "c.yaml")
	yaml := "projects:\n  orders:\n    destinations: [\"/queue/orders.*\", \"/topic/orders.*\"]\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.Projects["orders"].Destinations; !slices.Equal(got, []string{"/queue/orders.*", "/topic/orders.*"}) {
		t.Fatalf("destinations %q", got)
	}

	c = Defaults()
	c.Projects = map[string]ProjectConfig{
		"Orders": {Destinations: []string{"/queue/x"}},
		"shop":   {Destinations: []string{"/queue/shop.*", "queue/shop.*", ""}},
	}
	err = c.Validate()
	for _, want := range []string{
		`projects: project name "Orders" holds 'O' at byte 0`,
		`projects.shop.destinations[1]: destination pattern "queue/shop.*" must start with "/"`,
		`projects.shop.destinations[2]: destination pattern is empty`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v\nwant %s", err, want)
		}
	}
}

// A project without a confinement sends anywhere; a confined one only to
// its patterns.
func TestConfine(t *testing.T) {
	t.Parallel()
	a := &Agent{cfg: Config{Projects: map[string]ProjectConfig{"orders": {Destinations: []string{"/queue/orders.*"}}, "open": {}}}}
	for _, tt := range []struct {
		project, dest string
		allowed       bool
	}{
		{"orders", "/queue/orders.out", true},
		{"orders", "/queue/billing.in", false},
		{"orders", "/topic/orders.x", false},
		{"open", "/queue/billing.in", true},
		{"shop", "/queue/billing.in", true},
	} {
		if err := a.confine(tt.project, tt.dest); (err == nil) != tt.allowed {
			t.Errorf("confine(%q, %q) = %v, want allowed %v", tt.project, tt.dest, err, tt.allowed)
		}
	}
}
