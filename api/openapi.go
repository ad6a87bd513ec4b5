package api

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"github.com/labstack/echo/v5"
	"gopkg.in/yaml.v3"
)

// openAPIYAML is the OpenAPI 3.1 description of the whole HTTP API.
// Nothing writes to it.
//
//go:embed openapi.yaml
var openAPIYAML []byte

// openAPIJSON converts openAPIYAML to JSON once, on first use, and keeps
// the bytes: the description never changes while the process runs.
var openAPIJSON = sync.OnceValues(func() ([]byte, error) { return yamlToJSON(openAPIYAML) })

// openAPI serves GET /api/v1/openapi.json.
func (s *server) openAPI(c *echo.Context) error {
	doc, err := openAPIJSON()
	if err != nil {
		return fmt.Errorf("openapi description: %w", err) // a 500 the agent logs
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, doc)
}

// yamlToJSON converts a YAML document to JSON. Mapping keys that YAML reads
// as other scalars than strings (an unquoted response code such as 200)
// become their text, as JSON wants string keys.
func yamlToJSON(doc []byte) ([]byte, error) {
	var v any
	if err := yaml.Unmarshal(doc, &v); err != nil {
		return nil, fmt.Errorf("parse yaml: %w", err)
	}
	out, err := json.Marshal(stringKeys(v))
	if err != nil {
		return nil, fmt.Errorf("encode json: %w", err)
	}
	return out, nil
}

// stringKeys returns v with every map[any]any made a map[string]any,
// recursively.
func stringKeys(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = stringKeys(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = stringKeys(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = stringKeys(e)
		}
		return x
	}
	return v
}
