package scripts

import (
	"strings"
	"testing"
)

func TestValidProjectName(t *testing.T) {
	t.Parallel()
	for _, name := range []string{
		"orders", "a", "0", "jms-orders", "v1.2_x", "a..b", "a.", "-a", "_", strings.Repeat("z", 63),
	} {
		if err := ValidProjectName(name); err != nil {
			t.Errorf("ValidProjectName(%q) = %v, want nil", name, err)
		}
	}
	for name, problem := range map[string]string{
		"":                       "is empty",
		".":                      `starts with "."`,
		"..":                     `starts with "."`,
		".hidden":                `starts with "."`,
		"a b💥":                   `holds ' ' at byte 1`,
		"Orders":                 `holds 'O' at byte 0`,
		"a/b":                    `holds '/' at byte 1`,
		"a:b":                    `holds ':' at byte 1`,
		"é":                      `holds 'é' at byte 0`,
		"a\x00":                  `holds '\x00' at byte 1`,
		"a\xff":                  "holds '\uFFFD' at byte 1",
		strings.Repeat("a", 64):  "is 64 characters long",
		strings.Repeat("x", 300): "is 300 characters long",
	} {
		err := ValidProjectName(name)
		if err == nil {
			t.Errorf("ValidProjectName(%q) = nil, want an error", name)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, problem) || !strings.HasSuffix(msg, projectNameRule) {
			t.Errorf("ValidProjectName(%q) = %q, want it to say %q and state the rule", name, msg, problem)
		}
		if len(msg) > 250 {
			t.Errorf("ValidProjectName(%q): error of %d bytes, want the name cut short", name, len(msg))
		}
	}
}

// A project loaded under the manifest's own name (no deploy name) follows
// the project name rule; one loaded under a deploy name keeps the older,
// looser check so that stored projects keep loading.
func TestLoadChecksTheManifestNameWhenItNamesTheProject(t *testing.T) {
	t.Parallel()
	manifest := func(name string) map[string][]byte {
		return project("project: " + name + "\noperations:\n  - name: A\n    script: operations/a.js\n")
	}
	if _, err := Load("", 1, manifest("Orders"), LoadOptions{}); err == nil || !strings.Contains(err.Error(), "lowercase letters") {
		t.Errorf(`Load("", project: Orders) = %v, want the project name rule`, err)
	}
	if _, err := Load("", 1, manifest("orders"), LoadOptions{}); err != nil {
		t.Errorf(`Load("", project: orders) = %v`, err)
	}
	if _, err := Load("Orders", 1, manifest("Orders"), LoadOptions{}); err != nil {
		t.Errorf(`Load("Orders", project: Orders) = %v, want a stored project to keep loading`, err)
	}
}
