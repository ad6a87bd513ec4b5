package glob

import (
	"strings"
	"testing"
)

// "*" matches any characters, none included;
// everything else matches itself.
func TestMatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"shop", "shop", true},
		{"shop", "shops", false},
		{"shop", "sho", false},
		{"*", "anything", true},
		{"*", "", true},
		{"shop*", "shop", true},
		{"shop*", "shop-eu", true},
		{"*-prod", "shop-prod", true},
		{"*-prod", "shop-prod2", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"a*b", "abab", true},
		{"a*b", "abba", false},
		{"**", "x", true},
		{"s.o", "sxo", false}, // '.' is not a wildcard
	} {
		if got := Match(tc.pattern, tc.name); got != tc.want {
			t.Errorf("Match(%q, %q) = %v; want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

// FuzzMatch: the matcher agrees with a plain recursive definition.
func FuzzMatch(f *testing.F) {
	f.Add("a*b*c", "axxbyyc")
	f.Add("*-prod", "shop-prod")
	f.Add("**a", "ba")
	f.Fuzz(func(t *testing.T, pattern, name string) {
		if len(pattern) > 12 || len(name) > 24 {
			return // the reference is exponential
		}
		if got, want := Match(pattern, name), refMatch(pattern, name); got != want {
			t.Fatalf("Match(%q, %q) = %v; want %v", pattern, name, got, want)
		}
	})
}

func refMatch(pattern, name string) bool {
	if pattern == "" {
		return name == ""
	}
	if rest, ok := strings.CutPrefix(pattern, "*"); ok {
		for i := 0; i <= len(name); i++ {
			if refMatch(rest, name[i:]) {
				return true
			}
		}
		return false
	}
	return name != "" && pattern[0] == name[0] && refMatch(pattern[1:], name[1:])
}
