package secrets

import (
	"errors"
	"fmt"
)

// ErrInvalid matches (errors.Is) the errors of a project name, secret
// name or value that the rules refuse; the error's text says which rule.
var ErrInvalid = errors.New("invalid secret")

// ruleError is a broken rule: its text alone, matching ErrInvalid.
type ruleError struct{ msg string }

func (e *ruleError) Error() string        { return e.msg }
func (e *ruleError) Is(target error) bool { return target == ErrInvalid }

func ruleErrorf(format string, args ...any) error {
	return &ruleError{msg: fmt.Sprintf(format, args...)}
}

// MaxNameLength bounds a secret name, in characters.
const MaxNameLength = 128

// MaxValueBytes bounds a secret's value (64 KiB).
const MaxValueBytes = 64 << 10

// nameRule is the secret name rule, in the words errors use.
const nameRule = `a secret name is 1 to 128 ASCII letters, digits and "_", not starting with a digit`

// CheckName returns nil when name may name a secret (^[A-Za-z_][A-Za-z0-9_]{0,127}$),
// else an error matching ErrInvalid that names the problem and states the
// rule. It is a pure function.
func CheckName(name string) error {
	problem := nameProblem(name)
	if problem == "" {
		return nil
	}
	return ruleErrorf("secret name %s; %s", problem, nameRule)
}

func nameProblem(name string) string {
	switch {
	case name == "":
		return "is empty"
	case len(name) > MaxNameLength:
		return fmt.Sprintf("%.40q… is %d characters long", name, len(name))
	case name[0] >= '0' && name[0] <= '9':
		return fmt.Sprintf("%q starts with a digit", name)
	}
	for i, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return fmt.Sprintf("%q holds %q at byte %d", name, r, i)
		}
	}
	return ""
}

// CheckValue returns nil when value may be a secret's value (1 byte to
// MaxValueBytes), else an error matching ErrInvalid that says which bound
// it breaks (never the value).
func CheckValue(value []byte) error {
	switch {
	case len(value) == 0:
		return ruleErrorf("secret value is empty; a value is 1 byte to 64 KiB")
	case len(value) > MaxValueBytes:
		return ruleErrorf("secret value is %d bytes; a value is at most 64 KiB (%d bytes)", len(value), MaxValueBytes)
	}
	return nil
}
