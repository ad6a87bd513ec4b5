package runtime

import (
	"bytes"

	"github.com/dop251/goja"
	"github.com/dop251/goja/ast"
	"github.com/dop251/goja/parser"
)

// Module reuse. Every run evaluates its script's module afresh, so that
// nothing a run leaves in module scope reaches the next run on the same
// runtime. For a script that can hold no such state, the evaluated function
// is kept on the runtime and reused instead (evaluating the module was a
// third of a small webhook's time in the engine).
//
// A script qualifies when its top level declares functions and nothing else
// (no variables, no statements but directives), and each of those functions
// is only ever called by name: every occurrence of a declared name in the
// source text (comments and strings included, which only errs toward not
// reusing) is followed by "(" and not preceded by "new" or ".". No script
// code can then reach a module function object, its prototype or a
// module binding to change it. Sources mentioning eval, callee, caller,
// module or exports (the wrapper's objects, which would persist), or a \u
// escape (which could spell a name) do not qualify.

// progInfo is what a runtime knows about a program's source.
type progInfo struct {
	readsArguments bool // may read arguments beyond its declared parameters
	reusable       bool // its module may be evaluated once and reused
}

// programInfo returns prog's progInfo, computed from src once per runtime.
func (v *vm) programInfo(prog *goja.Program, src []byte) progInfo {
	if info, ok := v.progs[prog]; ok {
		return info
	}
	info := progInfo{
		readsArguments: bytes.Contains(src, []byte("arguments")) || bytes.Contains(src, []byte("...")) || bytes.Contains(src, []byte("eval")),
		reusable:       reusableModule(src),
	}
	if len(v.progs) >= maxWrappers {
		clear(v.progs)
	}
	v.progs[prog] = info
	return info
}

// reusableModule reports whether src's module keeps no state between runs
// (see the comment at the top of this file).
func reusableModule(src []byte) bool {
	for _, word := range []string{"eval", "callee", "caller", `\u`, "module", "exports"} {
		if bytes.Contains(src, []byte(word)) {
			return false
		}
	}
	prog, err := parser.ParseFile(nil, "", string(src), 0)
	if err != nil {
		return false
	}
	var names []string
	for _, st := range prog.Body {
		switch st := st.(type) {
		case *ast.FunctionDeclaration:
			if st.Function == nil || st.Function.Name == nil {
				return false
			}
			names = append(names, string(st.Function.Name.Name))
		case *ast.ExpressionStatement: // a directive such as "use strict"
			if _, ok := st.Expression.(*ast.StringLiteral); !ok {
				return false
			}
		case *ast.EmptyStatement:
		default:
			return false
		}
	}
	for _, name := range names {
		if !onlyCalled(src, name) {
			return false
		}
	}
	return len(names) > 0
}

// onlyCalled reports whether every whole-word occurrence of name in src is
// a call (or the declaration): followed by "(" and preceded by neither "."
// nor "new".
func onlyCalled(src []byte, name string) bool {
	for i := 0; ; {
		j := bytes.Index(src[i:], []byte(name))
		if j < 0 {
			return true
		}
		start, end := i+j, i+j+len(name)
		i = end
		if start > 0 && isIdentByte(src[start-1]) || end < len(src) && isIdentByte(src[end]) {
			continue // part of a longer word
		}
		after := bytes.TrimLeft(src[end:], " \t\r\n")
		if len(after) == 0 || after[0] != '(' {
			return false
		}
		before := bytes.TrimRight(src[:start], " \t\r\n")
		if bytes.HasSuffix(before, []byte(".")) || bytes.HasSuffix(before, []byte("?.")) {
			return false
		}
		if bytes.HasSuffix(before, []byte("new")) && (len(before) == 3 || !isIdentByte(before[len(before)-4])) {
			return false
		}
	}
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// moduleKey names a function loaded from a program.
type moduleKey struct {
	prog *goja.Program
	want string // "handle" or "filter"
}

// loadedFunc is a function loaded from a reusable module.
type loadedFunc struct {
	fn     goja.Callable
	params int
}

// function returns prog's function named want: the one kept on the runtime
// when the module is reusable, else a freshly evaluated one.
func (v *vm) function(prog *goja.Program, src []byte, want string) (goja.Callable, int, progInfo, error) {
	info := v.programInfo(prog, src)
	if !info.reusable {
		fn, params, err := v.loadModule(prog, want)
		return fn, params, info, err
	}
	key := moduleKey{prog, want}
	if f, ok := v.modules[key]; ok {
		return f.fn, f.params, info, nil
	}
	fn, params, err := v.loadModule(prog, want)
	if err != nil {
		return nil, 0, info, err
	}
	if len(v.modules) >= maxWrappers {
		clear(v.modules)
	}
	v.modules[key] = loadedFunc{fn, params}
	return fn, params, info, nil
}
