package scripts

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// ParseManifest reads opsrunner.yaml strictly: YAML syntax, the shape and
// types of every field, and unknown keys (an error, never ignored). Each
// problem is a *ValidationError with the manifest's line:col and field path;
// one problem is returned as itself, several as Errors. It does not apply
// defaults or check meaning (names, references, limits): Load does that.
// Safe for concurrent use.
func ParseManifest(data []byte) (*Manifest, error) {
	m, _, errs := parseManifest(data)
	switch len(errs) {
	case 0:
		return m, nil
	case 1:
		return nil, errs[0]
	}
	return nil, errs
}

// nodeIndex maps a field path ("operations[2].timeout") to its YAML node.
type nodeIndex map[string]*yaml.Node

// at returns the node of field or of its nearest recorded parent.
func (ix nodeIndex) at(field string) *yaml.Node {
	for {
		if n, ok := ix[field]; ok {
			return n
		}
		i := strings.LastIndexAny(field, ".[")
		if i <= 0 {
			return ix[""]
		}
		field = field[:i]
	}
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func parseManifest(data []byte) (*Manifest, nodeIndex, Errors) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, Errors{&ValidationError{File: ManifestFile, Message: "manifest is empty"}}
		}
		ve := &ValidationError{File: ManifestFile, Message: err.Error()}
		if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
			ve.Line, _ = strconv.Atoi(m[1])
			ve.Message = "invalid YAML: " + m[2]
		}
		return nil, nil, Errors{ve}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, nil, Errors{&ValidationError{File: ManifestFile, Line: extra.Line, Column: extra.Column,
			Message: "manifest must be a single YAML document"}}
	} else if !errors.Is(err, io.EOF) {
		return nil, nil, Errors{&ValidationError{File: ManifestFile, Message: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, nil, Errors{&ValidationError{File: ManifestFile, Message: "manifest is empty"}}
		}
		root = root.Content[0]
	}
	w := &walker{nodes: nodeIndex{}}
	m := &Manifest{}
	w.decode(root, reflect.ValueOf(m).Elem(), "")
	if len(w.errs) > 0 {
		return nil, w.nodes, w.errs
	}
	return m, w.nodes, nil
}

// walker decodes a YAML tree into a struct field by field, so every problem
// is reported at its own node and decoding goes on after one.
type walker struct {
	nodes  nodeIndex
	errs   Errors
	budget int                 // nodes left to visit (bounds alias expansion)
	active map[*yaml.Node]bool // aliases being expanded (cycles)
}

const maxManifestNodes = 100_000

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// maxReported bounds the problems reported for one manifest.
const maxReported = 100

func (w *walker) fail(n *yaml.Node, field, format string, args ...any) {
	if len(w.errs) > maxReported {
		return
	}
	if len(w.errs) == maxReported {
		format, args = "too many problems; stopped after %d", []any{maxReported}
	}
	w.errs = append(w.errs, &ValidationError{File: ManifestFile, Line: n.Line, Column: n.Column,
		Field: field, Message: fmt.Sprintf(format, args...)})
}

func (w *walker) decode(n *yaml.Node, v reflect.Value, field string) {
	if w.budget++; w.budget > maxManifestNodes {
		if w.budget == maxManifestNodes+1 {
			w.fail(n, field, "manifest is too large or expands too many aliases")
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		if w.active == nil {
			w.active = map[*yaml.Node]bool{}
		}
		if w.active[n] || n.Alias == nil {
			w.fail(n, field, "alias *%s refers to itself", n.Value)
			return
		}
		w.active[n] = true
		defer delete(w.active, n)
		w.decode(n.Alias, v, field)
		return
	}
	w.nodes[field] = n
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // absent: zero value
	}
	t := v.Type()
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			ve := &ValidationError{}
			if errors.As(err, &ve) {
				w.fail(&yaml.Node{Line: ve.Line, Column: ve.Column}, field, "%s", ve.Message)
			} else {
				w.fail(n, field, "%v", err)
			}
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		w.decodeStruct(n, v, field)
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		w.decode(n, p.Elem(), field)
		v.Set(p)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.fail(n, field, "expected a list, got a %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			w.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", field, i))
		}
		v.Set(s)
	case reflect.Map:
		w.decodeMap(n, v, field)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			w.fail(n, field, "expected a string, got a %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int, reflect.Bool, reflect.Float64:
		want := map[reflect.Kind]string{reflect.Int: "an integer", reflect.Bool: "true or false", reflect.Float64: "a number"}[t.Kind()]
		if n.Kind != yaml.ScalarNode {
			w.fail(n, field, "expected %s, got a %s", want, kindName(n))
			return
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			w.fail(n, field, "expected %s, got %q", want, n.Value)
		}
	default:
		w.fail(n, field, "unsupported field type %s", t)
	}
}

// decodeMap decodes a mapping with plain keys (env) into a map whose keys
// are strings; each value is at field.key.
func (w *walker) decodeMap(n *yaml.Node, v reflect.Value, field string) {
	t := v.Type()
	if t.Key().Kind() != reflect.String {
		w.fail(n, field, "unsupported field type %s", t)
		return
	}
	if n.Kind != yaml.MappingNode {
		w.fail(n, field, "expected a mapping, got a %s", kindName(n))
		return
	}
	m := reflect.MakeMapWithSize(t, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			w.fail(k, field, "keys must be plain names, got a %s", kindName(k))
			continue
		}
		key := reflect.ValueOf(k.Value).Convert(t.Key())
		if m.MapIndex(key).IsValid() {
			w.fail(k, field, "duplicate key %q", k.Value)
			continue
		}
		elem := reflect.New(t.Elem()).Elem()
		w.decode(val, elem, field+"."+k.Value)
		w.nodes[field+"."+k.Value] = k
		m.SetMapIndex(key, elem)
	}
	v.Set(m)
}

func (w *walker) decodeStruct(n *yaml.Node, v reflect.Value, field string) {
	if n.Kind != yaml.MappingNode {
		w.fail(n, field, "expected a mapping, got a %s", kindName(n))
		return
	}
	t := v.Type()
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			w.fail(k, field, "keys must be plain names, got a %s", kindName(k))
			continue
		}
		sub := k.Value
		if field != "" {
			sub = field + "." + k.Value
		}
		if k.Value == "<<" {
			w.fail(k, sub, "merge keys (<<) are not supported")
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			w.fail(k, sub, "key %q is repeated (first at line %d)", k.Value, prev.Line)
			continue
		}
		seen[k.Value] = k
		idx := fieldIndex(t, k.Value)
		if idx < 0 {
			w.fail(k, sub, "unknown key %q%s", k.Value, suggest(t, k.Value))
			continue
		}
		w.decode(val, v.Field(idx), sub)
	}
}

// fieldIndex finds the struct field whose yaml tag is name, or -1.
func fieldIndex(t reflect.Type, name string) int {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == name {
			return i
		}
	}
	return -1
}

// suggest proposes a known key that differs from name only by case.
func suggest(t reflect.Type, name string) string {
	var known []string
	for i := 0; i < t.NumField(); i++ {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		if strings.EqualFold(tag, name) {
			return fmt.Sprintf(" (did you mean %q?)", tag)
		}
		known = append(known, tag)
	}
	return fmt.Sprintf(" (known keys: %s)", strings.Join(known, ", "))
}
