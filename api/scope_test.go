package api_test

import (
	"strings"
	"testing"

	"github.com/opsrunner/opsrunner/api"
)

// ParseScope takes admin and action:<project glob>, and refuses anything
// else saying why.
func TestParseScope(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"admin", "deploy:shop", "run:*", "read:team-*", "read:*.prod", "deploy:a*b*c", "read:my_app.v2"} {
		if s, err := api.ParseScope(ok); err != nil || string(s) != ok {
			t.Errorf("ParseScope(%q) = %q, %v", ok, s, err)
		}
	}
	for bad, why := range map[string]string{
		"":                                 "must be admin",
		"root":                             "must be admin",
		"write:shop":                       "must be admin",
		"Admin":                            "must be admin",
		"admin:shop":                       "admin takes no project pattern",
		"read":                             "read needs a project pattern, e.g. read:*",
		"deploy:":                          "deploy needs a project pattern",
		"read:Shop":                        `not 'S'`,
		"read:shop/*":                      `not '/'`,
		"run:a b":                          `not ' '`,
		"read:sh?p":                        `not '?'`,
		" read:shop":                       "must be admin",
		"read:" + strings.Repeat("a", 256): "longer than 255",
	} {
		if _, err := api.ParseScope(bad); err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("ParseScope(%q) = %v; want an error saying %q", bad, err, why)
		}
	}
}

// FuzzParseScope: any string parses or is refused without panicking; a
// parsed scope is its own text, parses again, and its pattern holds only
// project name characters and '*'.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"admin", "read:*", "deploy:shop", "run:a*b", "read:", "admin:x", "read:**", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := api.ParseScope(s)
		if err != nil {
			return
		}
		if string(sc) != s {
			t.Fatalf("ParseScope(%q) = %q", s, sc)
		}
		if _, err := api.ParseScope(string(sc)); err != nil {
			t.Fatalf("ParseScope(%q) again: %v", s, err)
		}
		if s == "admin" {
			return
		}
		_, pattern, _ := strings.Cut(s, ":")
		if pattern == "" || strings.Trim(pattern, "abcdefghijklmnopqrstuvwxyz0123456789-_.*") != "" {
			t.Fatalf("ParseScope(%q) took pattern %q", s, pattern)
		}
	})
}
