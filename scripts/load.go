package scripts

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/dop251/goja"
	"github.com/dop251/goja/ast"
	"github.com/dop251/goja/parser"

	"github.com/opsrunner/opsrunner/egress"
)

// LoadOptions adds agent-dependent checks to Load. The zero value checks the
// project on its own.
type LoadOptions struct {
	// CheckListener, when set, validates agent-dependent listener settings
	// (known connection name, selector support); its error is reported at the
	// listener's manifest position. It sees the listener with defaults applied
	// (Connection "default" when empty) and must not modify it.
	CheckListener func(l *Listener) error
}

// Load turns a bundle's files into a deployable Project: it parses and
// validates opsrunner.yaml against the files, applies defaults, and compiles
// every script and filter the manifest names. name is the project's deploy
// name (the URL's); the manifest's project must equal it (an empty name
// skips that check). version is recorded as is. A nil error means
// deployable; otherwise the error is an Errors listing every problem found
// (*ValidationError for the manifest and bundle, *ScriptError for syntax
// errors). The Project keeps files (the caller must not modify the map
// afterwards) and is safe to share between goroutines.
func Load(name string, version int, files map[string][]byte, opts LoadOptions) (*Project, error) {
	data, ok := files[ManifestFile]
	if !ok {
		msg := "the bundle has no opsrunner.yaml at its root"
		if _, yml := files["opsrunner.yml"]; yml {
			msg += " (found opsrunner.yml: rename it to opsrunner.yaml)"
		}
		return nil, Errors{&ValidationError{File: ManifestFile, Message: msg}}
	}
	m, nodes, errs := parseManifest(data)
	if len(errs) > 0 {
		return nil, errs
	}
	v := &validator{m: m, nodes: nodes, files: files, opts: opts}
	v.validate(name)
	errs = v.errs

	programs := map[string]*goja.Program{}
	var scriptErrs Errors
	compile := func(p string) {
		if _, done := programs[p]; done || p == "" || !strings.HasSuffix(p, ".js") {
			return
		}
		src, ok := files[p]
		if !ok {
			return // reported by validation
		}
		prg, err := compileFile(p, src, files)
		if err != nil {
			scriptErrs = append(scriptErrs, err)
			programs[p] = nil
			return
		}
		programs[p] = prg
	}
	for _, o := range m.Operations {
		if o.Type == TypeScript {
			compile(o.Script)
		}
	}
	for _, l := range m.Listeners {
		compile(l.Filter)
	}
	sort.SliceStable(scriptErrs, func(i, j int) bool {
		a, b := scriptErrs[i].(*ScriptError), scriptErrs[j].(*ScriptError)
		return a.File < b.File
	})
	errs = append(errs, scriptErrs...)
	if len(errs) > 0 {
		return nil, errs
	}
	pol, err := egress.ParsePolicy(m.Egress)
	if err != nil { // validation reported every bad entry already
		return nil, Errors{&ValidationError{File: ManifestFile, Field: "egress", Message: err.Error()}}
	}

	p := &Project{
		Name:      m.Project,
		Version:   version,
		CreatedAt: time.Now().UTC(),
		Manifest:  m,
		Files:     files,
		Programs:  programs,
		Egress:    pol,
		ops:       map[string]*Operation{},
		hooks:     map[string]*Operation{},
		listeners: map[string]*Listener{},
	}
	// Unescaped paths first, so a path as written wins over another
	// operation's unescaped form (names such as "a%20b" and "a b").
	for i := range m.Operations {
		o := &m.Operations[i]
		p.ops[o.Name] = o
		if o.Webhook != nil {
			if un, err := url.PathUnescape(o.Webhook.Path); err == nil {
				p.hooks[un] = o
			}
		}
	}
	for i := range m.Operations {
		if o := &m.Operations[i]; o.Webhook != nil {
			p.hooks[o.Webhook.Path] = o
		}
	}
	for i := range m.Listeners {
		p.listeners[m.Listeners[i].Name] = &m.Listeners[i]
	}
	return p, nil
}

// Compile compiles one script the way Load does: wrapped as a module
// (Wrap), not strict, source maps off. A syntax error is a *ScriptError at
// the user's line:col. Safe for concurrent use.
func Compile(file string, src []byte) (*goja.Program, error) {
	return compileFile(file, src, nil)
}

func compileFile(file string, src []byte, files map[string][]byte) (*goja.Program, error) {
	loader := func(p string) ([]byte, error) {
		p = strings.TrimPrefix(p, "file://")
		p = strings.TrimPrefix(path.Clean("/"+p), "/")
		if data, ok := files[p]; ok {
			return data, nil
		}
		return nil, fmt.Errorf("source map %s not in the bundle", p)
	}
	wrapped := Wrap(string(src))
	prg, err := parser.ParseFile(nil, file, wrapped, 0, parser.WithSourceMapLoader(loader))
	if err != nil {
		return nil, syntaxError(file, string(src), err)
	}
	if !isWrapper(prg) {
		return nil, &ScriptError{File: file, Line: 1, Column: 1,
			Message: "SyntaxError: unbalanced braces or parentheses close the module around the script"}
	}
	out, err := goja.CompileAST(prg, false)
	if err != nil {
		return nil, syntaxError(file, string(src), err)
	}
	return out, nil
}

// isWrapper reports whether the program is still the single function
// expression Wrap builds, i.e. the script did not close it early.
func isWrapper(prg *ast.Program) bool {
	if len(prg.Body) != 1 {
		return false
	}
	st, ok := prg.Body[0].(*ast.ExpressionStatement)
	if !ok {
		return false
	}
	_, ok = st.Expression.(*ast.FunctionLiteral)
	return ok
}

// syntaxError maps a parser or compiler error to the user's file.
func syntaxError(file, src string, err error) *ScriptError {
	se := &ScriptError{File: file, Line: 1, Column: 1, Message: err.Error()}
	var line, col int
	var list parser.ErrorList
	var one *parser.Error
	var cse *goja.CompilerSyntaxError
	switch {
	case errors.As(err, &list) && len(list) > 0:
		line, col, se.Message = list[0].Position.Line, list[0].Position.Column, "SyntaxError: "+list[0].Message
	case errors.As(err, &one):
		line, col, se.Message = one.Position.Line, one.Position.Column, "SyntaxError: "+one.Message
	case errors.As(err, &cse):
		se.Message = "SyntaxError: " + cse.Message
		if cse.File != nil {
			pos := cse.File.Position(cse.Offset)
			line, col = pos.Line, pos.Column
		}
	}
	if line > 0 {
		se.Line, se.Column = UserPosition(line, col)
	}
	// An error found in the wrapper's closing lines belongs at the end of
	// the user's script (an unclosed block or string).
	lines := strings.Split(src, "\n")
	if se.Line > len(lines) {
		se.Line = len(lines)
		se.Column = len(lines[len(lines)-1]) + 1
	}
	return se
}

// WebhookPath is the operation's webhook path segment: Webhook.Path, or the
// name URL-path-escaped ("Process Order" → "Process%20Order"). Load fills
// Webhook.Path in, so this matters for hand-built operations only.
func (o *Operation) WebhookPath() string {
	if o.Webhook != nil && o.Webhook.Path != "" {
		return o.Webhook.Path
	}
	return url.PathEscape(o.Name)
}

// Operation finds an operation by exact name. Safe for concurrent use.
func (p *Project) Operation(name string) (*Operation, bool) {
	if p.ops != nil {
		o, ok := p.ops[name]
		return o, ok
	}
	if p.Manifest == nil {
		return nil, false
	}
	for i := range p.Manifest.Operations {
		if o := &p.Manifest.Operations[i]; o.Name == name {
			return o, true
		}
	}
	return nil, false
}

// WebhookOperation finds the operation exposed at webhook path, given
// either escaped ("Process%20Order") or unescaped ("Process Order").
// Operations without a webhook are never found. Safe for concurrent use.
func (p *Project) WebhookOperation(path string) (*Operation, bool) {
	if p.hooks != nil {
		o, ok := p.hooks[path]
		return o, ok
	}
	if p.Manifest == nil {
		return nil, false
	}
	for i := range p.Manifest.Operations {
		o := &p.Manifest.Operations[i]
		if o.Webhook == nil {
			continue
		}
		wp := o.WebhookPath()
		if un, err := url.PathUnescape(wp); wp == path || (err == nil && un == path) {
			return o, true
		}
	}
	return nil, false
}

// Listener finds a listener by name. Safe for concurrent use.
func (p *Project) Listener(name string) (*Listener, bool) {
	if p.listeners != nil {
		l, ok := p.listeners[name]
		return l, ok
	}
	if p.Manifest == nil {
		return nil, false
	}
	for i := range p.Manifest.Listeners {
		if l := &p.Manifest.Listeners[i]; l.Name == name {
			return l, true
		}
	}
	return nil, false
}

// Program returns the compiled script of operation o (nil for an
// acknowledge operation). Safe for concurrent use.
func (p *Project) Program(o *Operation) *goja.Program {
	if o == nil || o.Type == TypeAcknowledge {
		return nil
	}
	return p.Programs[o.Script]
}
