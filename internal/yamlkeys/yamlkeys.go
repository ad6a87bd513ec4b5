// Package yamlkeys lists the YAML keys a Go struct type reads, for tests
// that hold the reference tables of docs/ against the code.
package yamlkeys

import (
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

var unmarshaler = reflect.TypeFor[yaml.Unmarshaler]()

// Of lists the keys of struct type t (its exported fields' yaml tags)
// with their paths: nested keys joined with ".", "[]" for an item of a
// list of structs, "<name>" for a key of a map of structs. A type that
// reads itself from YAML (a duration, a placement) is one key.
func Of(t reflect.Type) []string {
	return keys(t, "")
}

func keys(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || tag == "" || tag == "-" {
			continue
		}
		path := prefix + tag
		out = append(out, path)
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case reflect.PointerTo(ft).Implements(unmarshaler):
		case ft.Kind() == reflect.Struct:
			out = append(out, keys(ft, path+".")...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, keys(ft.Elem(), path+"[].")...)
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct:
			out = append(out, keys(ft.Elem(), path+".<name>.")...)
		}
	}
	return out
}
