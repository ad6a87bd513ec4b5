package scripts_test

import (
	"bufio"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/opsrunner/opsrunner/internal/yamlkeys"
	"github.com/opsrunner/opsrunner/scripts"
)

// manifestDoc is the user reference of opsrunner.yaml.
const manifestDoc = "../docs/manifest.md"

// TestManifestDocListsEveryKey: every key the manifest parser accepts (the
// yaml tags of Manifest, as ParseManifest matches keys, nested ones too)
// has a row in docs/manifest.md's table, and the table names no key the
// parser would refuse. A key added to the model without docs fails here.
func TestManifestDocListsEveryKey(t *testing.T) {
	documented := readManifestTable(t, manifestDoc)
	known := yamlkeys.Of(reflect.TypeFor[scripts.Manifest]())
	for _, k := range known {
		if !documented[k] {
			t.Errorf("%s: manifest key %q is accepted by the parser but has no row in the table; add one", manifestDoc, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(documented)) {
		if !slices.Contains(known, k) {
			t.Errorf("%s: the table names key %q, which the parser refuses; remove or correct the row", manifestDoc, k)
		}
	}
}

var firstBackticked = regexp.MustCompile("^`([^`]+)`$")

// readManifestTable returns the keys in the first cell of the rows of the
// table headed "| key | type | default | meaning |".
func readManifestTable(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("read the manifest reference: %v", err)
	}
	defer f.Close()
	keys := map[string]bool{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "| key | type | default | meaning |"):
			in = true
		case !in || strings.HasPrefix(line, "| ---"):
		case !strings.HasPrefix(line, "|"):
			in = false
		default:
			cell, _, _ := strings.Cut(strings.TrimPrefix(line, "|"), "|")
			m := firstBackticked.FindStringSubmatch(strings.TrimSpace(cell))
			if m == nil {
				t.Fatalf("%s: row %q does not start with a `key`", path, line)
			}
			keys[m[1]] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatalf("%s: no table with the header \"| key | type | default | meaning |\"", path)
	}
	return keys
}

// TestManifestDocExampleParses: the example manifests of docs/manifest.md
// are manifests the parser accepts.
func TestManifestDocExampleParses(t *testing.T) {
	data, err := os.ReadFile(manifestDoc)
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(data), -1)
	if len(blocks) == 0 {
		t.Fatalf("%s has no yaml example", manifestDoc)
	}
	for i, b := range blocks {
		if _, err := scripts.ParseManifest([]byte(b[1])); err != nil {
			t.Errorf("%s: example %d does not parse: %v", manifestDoc, i+1, err)
		}
	}
}
