package agent_test

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/internal/yamlkeys"
)

// configDoc is the user reference whose table must list every setting.
const configDoc = "../docs/configuration.md"

// TestConfigurationDocListsEverySetting: docs/configuration.md's table names
// every YAML key of agent.Config (nested ones too), every OPSRUNNER_*
// variable the code reads and every flag of `opsrunner serve` and of the
// CLI as a whole, and names nothing else. A setting added without a row, or
// a row left behind by a removed setting, fails here with its name.
func TestConfigurationDocListsEverySetting(t *testing.T) {
	table := readConfigTable(t, configDoc)
	code := map[string]map[string]bool{
		"YAML key": setOf(yamlkeys.Of(reflect.TypeFor[agent.Config]())),
		"variable": envVarsInCode(t, ".."),
		"flag":     cliFlags(t, "../cmd/opsrunner"),
	}
	for _, column := range []string{"YAML key", "variable", "flag"} {
		t.Run(strings.ReplaceAll(column, " ", "_"), func(t *testing.T) {
			for _, name := range sortedKeys(code[column]) {
				if !table[column][name] {
					t.Errorf("%s: %s %q is read by the code but has no row in the table; add one", configDoc, column, name)
				}
			}
			for _, name := range sortedKeys(table[column]) {
				if !code[column][name] {
					t.Errorf("%s: the table names %s %q, which the code does not read; remove or correct the row", configDoc, column, name)
				}
			}
		})
	}
}

// envVarName is an OPSRUNNER_* variable as the code spells it.
var envVarName = regexp.MustCompile(`^OPSRUNNER_[A-Z0-9_]+$`)

// envVarsInCode returns the OPSRUNNER_* names written as string literals
// in the non-test Go code under root, benchmarks and internal test
// harnesses aside (they read no user setting of their own).
func envVarsInCode(t *testing.T, root string) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			rel, _ := filepath.Rel(root, path)
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || rel == "bench" || rel == "internal") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && envVarName.MatchString(s) {
					names[s] = true
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatalf("scan the code for OPSRUNNER_* variables: %v", err)
	}
	if len(names) == 0 {
		t.Fatal("found no OPSRUNNER_* variable in the code: the scan is broken")
	}
	return names
}

// flagDefiner matches pflag's methods that define a flag.
var flagDefiner = regexp.MustCompile(`^(String|Int|Int64|Uint|Uint64|Bool|Duration|Float64|StringSlice|StringArray|IntSlice)(Var)?P?$`)

// cliFlags returns the flags `opsrunner serve` defines (in newServe and
// addLogFlags, which serve and broker share) and the persistent flags of
// the root command, which every command takes.
func cliFlags(t *testing.T, dir string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	flags := map[string]bool{}
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parse %s: %v", path, err)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok {
				continue
			}
			serve := fn.Name.Name == "newServe" || fn.Name.Name == "addLogFlags"
			ast.Inspect(fn, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || !flagDefiner.MatchString(sel.Sel.Name) {
					return true
				}
				if serve || isPersistentFlags(sel.X) {
					if name := firstStringArg(call); name != "" {
						flags[name] = true
					}
				}
				return true
			})
		}
	}
	if !flags["http-addr"] || !flags["server"] {
		t.Fatalf("found flags %v, without --http-addr or --server: the scan is broken", sortedKeys(flags))
	}
	return flags
}

// isPersistentFlags reports whether x is a call of PersistentFlags().
func isPersistentFlags(x ast.Expr) bool {
	call, ok := x.(*ast.CallExpr)
	if !ok {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "PersistentFlags"
}

// firstStringArg is the first string literal among call's arguments: a
// flag's name for every pflag definer.
func firstStringArg(call *ast.CallExpr) string {
	for _, a := range call.Args {
		if lit, ok := a.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			s, _ := strconv.Unquote(lit.Value)
			return s
		}
	}
	return ""
}

var backticked = regexp.MustCompile("`([^`]+)`")

// readConfigTable reads the table whose header starts with "| YAML key |
// variable | flag |" and returns, per column, the backticked names of its
// cells ("--" dropped from flags).
func readConfigTable(t *testing.T, path string) map[string]map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("read the configuration reference: %v", err)
	}
	defer f.Close()
	columns := []string{"YAML key", "variable", "flag"}
	table := map[string]map[string]bool{}
	for _, c := range columns {
		table[c] = map[string]bool{}
	}
	in, rows := false, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "| YAML key | variable | flag |"):
			in = true
			continue
		case !in:
			continue
		case !strings.HasPrefix(line, "|"):
			in = false
			continue
		case strings.HasPrefix(line, "| ---"):
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < len(columns) {
			t.Fatalf("%s: row %q has fewer than %d cells", path, line, len(columns))
		}
		rows++
		for i, c := range columns {
			for _, m := range backticked.FindAllStringSubmatch(cells[i], -1) {
				table[c][strings.TrimPrefix(m[1], "--")] = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if rows == 0 {
		t.Fatalf("%s: no table with the header \"| YAML key | variable | flag | ...\"", path)
	}
	return table
}

func setOf(names []string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestConfigurationDocExamplesLoad: the YAML examples of
// docs/configuration.md are configurations the agent reads (no unknown
// key, no wrong type).
func TestConfigurationDocExamplesLoad(t *testing.T) {
	data, err := os.ReadFile(configDoc)
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(data), -1)
	if len(blocks) == 0 {
		t.Fatalf("%s has no yaml example", configDoc)
	}
	for i, b := range blocks {
		path := filepath.Join(t.TempDir(), "opsrunner.yaml")
		if err := os.WriteFile(path, []byte(b[1]), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := agent.Load(path, func(string) string { return "" }); err != nil {
			t.Errorf("%s: yaml example %d does not load: %v\n%s", configDoc, i+1, err, b[1])
		}
	}
}
