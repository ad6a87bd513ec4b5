package scripts

import (
	"fmt"
	"unicode/utf8"
)

// MaxProjectNameLength bounds a project name, in characters (a DNS label's
// bound, so a name can become a host name, a queue or a folder as is).
const MaxProjectNameLength = 63

// projectNameRule is the rule ValidProjectName checks, in the words its
// errors use.
const projectNameRule = `a project name is lowercase letters, digits, "-", "_" and ".", not starting with ".", at most 63 characters`

// ValidProjectName returns nil when name may name a project: 1 to 63
// lowercase ASCII letters, digits, "-", "_" and ".", not starting with "."
// (so never "." or ".."). Otherwise its error names the problem and states
// the rule. It is a pure function, safe from any goroutine.
func ValidProjectName(name string) error {
	problem := projectNameProblem(name)
	if problem == "" {
		return nil
	}
	return fmt.Errorf("project name %s %s; %s", quoteName(name), problem, projectNameRule)
}

// projectNameProblem says what breaks the rule in name, or "" when nothing.
func projectNameProblem(name string) string {
	switch {
	case name == "":
		return "is empty"
	case utf8.RuneCountInString(name) > MaxProjectNameLength:
		return fmt.Sprintf("is %d characters long", utf8.RuneCountInString(name))
	case name[0] == '.':
		return `starts with "."`
	}
	for i, r := range name {
		if !projectNameChar(r) {
			return fmt.Sprintf("holds %q at byte %d", r, i)
		}
	}
	return ""
}

func projectNameChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
}

// quoteName quotes name for an error, cut to a readable length.
func quoteName(name string) string {
	const show = 40
	if utf8.RuneCountInString(name) <= show {
		return fmt.Sprintf("%q", name)
	}
	runes := []rune(name)
	return fmt.Sprintf("%q…", string(runes[:show]))
}
