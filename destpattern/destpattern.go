// Package destpattern matches broker destinations against patterns in which
// "*" stands for any run of characters ("/queue/orders.*" matches
// "/queue/orders.in" and "/queue/orders.eu.in"; "*" alone matches every
// destination). Every other character matches itself. Its functions are
// pure and safe from any goroutine.
package destpattern

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/opsrunner/opsrunner/internal/glob"
)

// MaxLength bounds a pattern, in bytes.
const MaxLength = 1024

// Wildcard is the character that matches any run of characters.
const Wildcard = '*'

// Valid returns nil when pattern may be used: "*" alone, or a destination
// starting with "/" (such as "/queue/orders.*"), valid UTF-8 without
// control characters, at most MaxLength bytes. Its error says what is wrong.
func Valid(pattern string) error {
	switch {
	case pattern == "":
		return errors.New("destination pattern is empty")
	case len(pattern) > MaxLength:
		return fmt.Errorf("destination pattern %.40q… is %d bytes long; at most %d", pattern, len(pattern), MaxLength)
	case !utf8.ValidString(pattern):
		return fmt.Errorf("destination pattern %q is not valid UTF-8", pattern)
	case strings.IndexFunc(pattern, unicode.IsControl) >= 0:
		return fmt.Errorf("destination pattern %q holds control characters", pattern)
	case pattern[0] != '/' && pattern[0] != Wildcard:
		return fmt.Errorf("destination pattern %q must start with \"/\" (as /queue/orders.*) or be \"*\"", pattern)
	}
	return nil
}

// Match reports whether dest matches pattern, where each "*" matches any
// run of characters, "/" and "." included, or none. It takes time
// proportional to len(pattern)×len(dest) at worst and allocates nothing.
// Match does not check that pattern is Valid.
func Match(pattern, dest string) bool { return glob.Match(pattern, dest) }

// MatchAny reports whether dest matches one of patterns.
func MatchAny(patterns []string, dest string) bool {
	for _, p := range patterns {
		if Match(p, dest) {
			return true
		}
	}
	return false
}
