package main_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// `opsrunner members` prints a table with each agent's runs in progress and
// stuck runs; `-o json` prints the API's answer.
func TestMembersShowsRunningAndStuckRuns(t *testing.T) {
	url, _, _ := serve(t)

	// The agent lists itself after its first heartbeat.
	var out string
	var code int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if out, code = cli(t, url, "members"); code != 0 || strings.Contains(out, "cli-agent") {
			break
		}
	}
	if code != 0 {
		t.Fatalf("members: %d %s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "leader: cli-agent") {
		t.Fatalf("members output:\n%s", out)
	}
	header, row := strings.Fields(lines[1]), strings.Fields(lines[2])
	if strings.Join(header, " ") != "AGENT ADDRESS LEADER WORKERS BUSY RUNNING STUCK VERSION LAST SEEN" {
		t.Fatalf("members header: %q", lines[1])
	}
	if row[0] != "cli-agent" || row[2] != "*" || row[5] != "0" || row[6] != "0" {
		t.Errorf("members row: %q, want cli-agent, leader, 0 running, 0 stuck", lines[2])
	}

	out, code = cli(t, url, "members", "-o", "json")
	var view struct {
		Members []map[string]any
	}
	if code != 0 || json.Unmarshal([]byte(out), &view) != nil || len(view.Members) != 1 {
		t.Fatalf("members -o json: %d %s", code, out)
	}
	for _, k := range []string{"running", "stuckRuns"} {
		if _, ok := view.Members[0][k]; !ok {
			t.Errorf("members -o json lacks %q: %s", k, out)
		}
	}
}
