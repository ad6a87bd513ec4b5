package scripts

import (
	"fmt"
	"slices"
)

// AnyProject in an export's To lets every other project call the operation.
const AnyProject = "*"

// exports checks the manifest's exports: each names an operation of the
// project and lists at least one project (a valid project name, or
// AnyProject) that may call it.
func (v *validator) exports() {
	for i, ex := range v.m.Exports {
		f := fmt.Sprintf("exports[%d]", i)
		if _, ok := v.ops[ex.Operation]; ex.Operation == "" {
			v.errf(f, "an export needs an operation: {operation: Name, to: [project, ...]}")
		} else if !ok {
			v.errf(f+".operation", "exports names unknown operation %q", ex.Operation)
		}
		if len(ex.To) == 0 {
			v.errf(f, "export of %q needs to: the projects that may call it, or \"*\" for any project", ex.Operation)
		}
		for j, to := range ex.To {
			if to == AnyProject {
				continue
			}
			if err := ValidProjectName(to); err != nil {
				v.errf(fmt.Sprintf("%s.to[%d]", f, j), "%v (or \"*\" for any project)", err)
			}
		}
	}
}

// ExportsTo reports whether p lets project caller run its operation named
// operation: an export of that operation lists caller or AnyProject. A
// project's own operations are not exports: callers check that case
// themselves. Safe for concurrent use.
func (p *Project) ExportsTo(operation, caller string) bool {
	if p.Manifest == nil {
		return false
	}
	for _, ex := range p.Manifest.Exports {
		if ex.Operation == operation && (slices.Contains(ex.To, caller) || slices.Contains(ex.To, AnyProject)) {
			return true
		}
	}
	return false
}
