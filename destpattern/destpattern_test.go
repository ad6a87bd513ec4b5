package destpattern_test

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/opsrunner/opsrunner/destpattern"
)

func TestMatch(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		pattern, dest string
		want          bool
	}{
		{"/queue/orders.*", "/queue/orders.in", true},
		{"/queue/orders.*", "/queue/orders.eu.in", true},
		{"/queue/orders.*", "/queue/orders.", true},
		{"/queue/orders.*", "/queue/orders", false},
		{"/queue/orders.*", "/queue/ordersX", false},
		{"/queue/orders.*", "/topic/orders.in", false},
		{"/queue/orders.*", "/queue/orders.in/../x", true}, // "*" takes any characters; the broker refuses such names
		{"*", "/anything/at/all", true},
		{"*", "", true},
		{"/queue/a", "/queue/a", true},
		{"/queue/a", "/queue/ab", false},
		{"/queue/a", "/queue/", false},
		{"/*/orders.*", "/topic/orders.x", true},
		{"/*/orders.*", "/queue/billing.x", false},
		{"/queue/*.DLQ", "/queue/orders.DLQ", true},
		{"/queue/*.DLQ", "/queue/orders.DLQ.x", false},
		{"/queue/*a*a*a", "/queue/aaa", true},
		{"/queue/*a*a*a", "/queue/aa", false},
		{"/queue/**", "/queue/x", true},
		{"/queue/été.*", "/queue/été.x", true},
		{"", "", true},
		{"", "/queue/a", false},
	} {
		if got := destpattern.Match(tt.pattern, tt.dest); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.dest, got, tt.want)
		}
	}
}

func TestMatchAny(t *testing.T) {
	t.Parallel()
	ps := []string{"/queue/orders.*", "/topic/orders.*"}
	if !destpattern.MatchAny(ps, "/topic/orders.new") || destpattern.MatchAny(ps, "/queue/billing") || destpattern.MatchAny(nil, "/queue/a") {
		t.Fatal("MatchAny")
	}
}

func TestValid(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"*", "/queue/orders.*", "/topic/x", "/*", "*.DLQ"} {
		if err := destpattern.Valid(p); err != nil {
			t.Errorf("Valid(%q) = %v, want nil", p, err)
		}
	}
	for _, tt := range []struct{ pattern, want string }{
		{"", "destination pattern is empty"},
		{"queue/orders.*", `destination pattern "queue/orders.*" must start with "/" (as /queue/orders.*) or be "*"`},
		{"/queue/a\nb", `destination pattern "/queue/a\nb" holds control characters`},
		{"/queue/\xff", `destination pattern "/queue/\xff" is not valid UTF-8`},
		{"/" + strings.Repeat("a", destpattern.MaxLength), "is 1025 bytes long; at most 1024"},
	} {
		err := destpattern.Valid(tt.pattern)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Valid(%q) = %v, want %q", tt.pattern, err, tt.want)
		}
	}
}

// FuzzMatch compares Match with the regular expression the pattern stands
// for, and checks that a pattern matches the destinations it spells.
func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"/queue/orders.*", "/queue/orders.in"},
		{"*", ""},
		{"/queue/*a*a*a", "/queue/aaaaaaaaaaaaaaaaaaaaaaaaaaaab"},
		{"**", "x"},
		{"/queue/été.*", "/queue/été.\xff"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, dest string) {
		got := destpattern.Match(pattern, dest)
		if !strings.Contains(pattern, "*") && got != (pattern == dest) {
			t.Fatalf("Match(%q, %q) = %v without a wildcard", pattern, dest, got)
		}
		if !destpattern.Match(pattern, strings.ReplaceAll(pattern, "*", "")) {
			t.Fatalf("Match(%q) refuses the pattern with its wildcards matching nothing", pattern)
		}
		if !destpattern.Match(pattern, strings.ReplaceAll(pattern, "*", dest)) {
			t.Fatalf("Match(%q) refuses the pattern with its wildcards matching %q", pattern, dest)
		}
		if !utf8.ValidString(pattern) || !utf8.ValidString(dest) || len(pattern) > 256 {
			return // the regexp oracle reads UTF-8
		}
		parts := strings.Split(pattern, "*")
		for i, p := range parts {
			parts[i] = regexp.QuoteMeta(p)
		}
		re := regexp.MustCompile(`(?s)\A` + strings.Join(parts, ".*") + `\z`)
		if want := re.MatchString(dest); got != want {
			t.Fatalf("Match(%q, %q) = %v, the regexp %s says %v", pattern, dest, got, re, want)
		}
	})
}
