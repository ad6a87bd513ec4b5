package main

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/store"
)

// version: the -ldflags value wins; else the module version, or "devel"
// with the VCS revision, time and modified flag `go build` stamps.
func TestReadBuildVersion(t *testing.T) {
	t.Parallel()
	stamped := func(mainVersion string, settings ...string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			bi := &debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: mainVersion}}
			for i := 0; i < len(settings); i += 2 {
				bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
			}
			return bi, true
		}
	}
	vcs := []string{"vcs.revision", "0123456789abcdef0123", "vcs.time", "2026-12-01T10:00:00Z", "vcs.modified", "true"}
	for _, tc := range []struct {
		name, ldflags string
		read          func() (*debug.BuildInfo, bool)
		want, line    string
	}{
		{"go build in a checkout", "dev", stamped("(devel)", vcs...), "devel+0123456789ab-dirty",
			"opsrunner devel (revision 0123456789abcdef0123, 2026-12-01T10:00:00Z, modified, go1.26)"},
		{"the Dockerfile's -ldflags", "1.4.0", stamped("(devel)", vcs...), "1.4.0",
			"opsrunner 1.4.0 (revision 0123456789abcdef0123, 2026-12-01T10:00:00Z, modified, go1.26)"},
		{"go install module@version", "dev", stamped("v1.2.3"), "v1.2.3", "opsrunner v1.2.3 (go1.26)"},
		{"no build information", "dev", func() (*debug.BuildInfo, bool) { return nil, false }, "dev", "opsrunner dev"},
	} {
		v := readBuildVersion(tc.ldflags, tc.read)
		var b bytes.Buffer
		v.text(&b)
		if v.String() != tc.want || strings.TrimSpace(b.String()) != tc.line {
			t.Errorf("%s: %q, %q; want %q, %q", tc.name, v.String(), b.String(), tc.want, tc.line)
		}
	}
}

// An API error prints its message, status and code, then its details:
// located problems as file:line:col, a hint first, other keys sorted.
func TestAPIErrorPrintsDetails(t *testing.T) {
	t.Parallel()
	located := &apiError{Status: 400, Code: "invalid_project", Message: "bad project", Details: []any{
		map[string]any{"file": "op.js", "line": 3.0, "column": 1.0, "message": "SyntaxError"},
		map[string]any{"file": "opsrunner.yaml", "message": "unknown key"},
	}}
	want := "bad project (400 invalid_project)\n  op.js:3:1: SyntaxError\n  opsrunner.yaml: unknown key"
	if got := located.Error(); got != want {
		t.Errorf("located:\n%s\nwant\n%s", got, want)
	}
	hinted := &apiError{Status: 400, Code: "bad_request", Message: "outcome must be one of a, b", Details: map[string]any{
		"valid": []any{"a", "b"}, "hint": "use a", "parameter": "outcome", "runId": "r1"}}
	want = "outcome must be one of a, b (400 bad_request)\n  run r1\n  hint: use a\n  parameter: outcome\n  valid: a, b"
	if got := hinted.Error(); got != want {
		t.Errorf("hinted:\n%s\nwant\n%s", got, want)
	}
}

// send dials the broker's host as the agent gives it, except a host that
// means every interface: then the agent's own host.
func TestAgentHost(t *testing.T) {
	t.Parallel()
	for _, tc := range [][3]string{
		{"127.0.0.1:61613", "http://agent:8080", "127.0.0.1:61613"},
		{"0.0.0.0:61613", "http://agent:8080", "agent:61613"},
		{"[::]:61613", "https://10.0.0.5:8443", "10.0.0.5:61613"},
		{":61613", "http://agent", "agent:61613"},
		{"broker.internal:61613", "http://agent:8080", "broker.internal:61613"},
	} {
		if got := agentHost(tc[0], tc[1]); got != tc[2] {
			t.Errorf("agentHost(%q, %q) = %q, want %q", tc[0], tc[1], got, tc[2])
		}
	}
}

// runs --follow keeps the columns of its first batch: a longer value
// later is cut, so that every row lines up with the header.
func TestRunTableKeepsColumns(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	first := []store.Run{{ID: "01JD0000000000000000000001", Project: "shop", Operation: "greet", Trigger: "webhook", Status: "succeeded", StartedAt: start}}
	tbl := newRunTable(first)
	var b bytes.Buffer
	tbl.header(&b)
	tbl.row(&b, first[0])
	tbl.row(&b, store.Run{ID: "01JD0000000000000000000002", Project: "a-project-with-a-long-name", Operation: "an operation with a long name",
		Trigger: "listener", Status: "failed", Outcome: "dead_lettered", StartedAt: start, Error: "boom\nsecond line"})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	for _, col := range []string{"PROJECT", "OPERATION", "TRIGGER", "STATUS", "OUTCOME", "MS", "STARTED", "ERROR"} {
		at := len([]rune(lines[0][:strings.Index(lines[0], col)]))
		for _, l := range lines[1:] {
			// A cell starts at the column (or the column is empty, or
			// past the end of a row whose last cells are empty).
			r := []rune(l)
			if len(r) > at && r[at-1] != ' ' {
				t.Errorf("column %s (at %d) does not start a cell in %q\n%s", col, at, l, b.String())
			}
		}
	}
	if !strings.Contains(lines[2], "a-proje…") || !strings.HasSuffix(lines[2], "boom") {
		t.Errorf("long values are cut, the error is its first line: %q", lines[2])
	}
}

func TestPreviousVersion(t *testing.T) {
	t.Parallel()
	p := store.ProjectInfo{ActiveVersion: 4, Versions: []store.ProjectVersion{{Version: 1}, {Version: 2}, {Version: 4}, {Version: 5}}}
	if got := previous(p); got != 2 {
		t.Errorf("previous of live 4 in 1,2,4,5 = %d, want 2", got)
	}
	p.ActiveVersion = 1
	if got := previous(p); got != 0 {
		t.Errorf("previous of live 1 = %d, want 0", got)
	}
}

func TestShellQuote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"greet": "greet", "Process Order": "'Process Order'", "it's": `'it'\''s'`, "$x": "'$x'", "": "''"} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
