// Package sdk holds the TypeScript declarations of the script API,
// embedded for `opsrunner types` and `opsrunner init`.
//
// The declarations (opsrunner.d.ts) describe every global a script sees
// besides the ECMAScript built-ins, the handler's `event` per trigger, `ctx`,
// the errors scripts see and the shapes they return. Tests keep them true:
// globals_test.go compares the globals they declare with those the runtime
// defines, and tsc_test.go type-checks the samples, a freshly scaffolded
// project and the fixtures in testdata with the TypeScript compiler.
package sdk

import _ "embed"

// DeclarationsFile is the name the declarations are written under.
const DeclarationsFile = "opsrunner.d.ts"

//go:embed opsrunner.d.ts
var declarations string

// Declarations returns the text of opsrunner.d.ts.
func Declarations() string { return declarations }
