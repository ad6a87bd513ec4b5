package scripts

import (
	"fmt"
	"strings"
)

// ScriptError is a failure located in a user's script: a syntax error at
// deploy, or an exception thrown while running. Line and Column are 1-based
// positions in the user's file as written (never in opsrunner's wrapper).
type ScriptError struct {
	File    string
	Line    int
	Column  int
	Message string
	// Stack is the JS stack, one frame per line, when known.
	Stack string
}

func (e *ScriptError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Message)
}

// ValidationError is a problem in the manifest or the bundle's structure.
// File is the offending file ("opsrunner.yaml" for the manifest); Line and
// Column are 1-based, zero when unknown; Field is the manifest path
// ("operations[2].timeout") when known.
type ValidationError struct {
	File    string
	Line    int
	Column  int
	Field   string
	Message string
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// Errors is a list of deploy problems reported together. It is returned only
// when non-empty.
type Errors []error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

// Unwrap lets errors.As find the individual errors.
func (es Errors) Unwrap() []error { return es }
