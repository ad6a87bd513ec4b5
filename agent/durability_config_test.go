package agent_test

import (
	"strings"
	"testing"

	"github.com/opsrunner/opsrunner/agent"
)

// run_durability defaults to sync (answers wait for the run history);
// batched is the opt-in, from YAML or OPSRUNNER_RUN_DURABILITY; anything
// else is refused.
func TestRunDurabilitySetting(t *testing.T) {
	for _, tc := range []struct{ env, want, wantErr string }{
		{"", agent.RunDurabilitySync, ""},
		{"batched", agent.RunDurabilityBatched, ""},
		{"sync", agent.RunDurabilitySync, ""},
		{"fast", "", "run_durability must be sync or batched"},
	} {
		cfg, err := agent.Load("", func(k string) string {
			if k == "OPSRUNNER_RUN_DURABILITY" {
				return tc.env
			}
			return ""
		})
		if err == nil {
			err = cfg.Validate()
		}
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%q: err %v, want %q", tc.env, err, tc.wantErr)
		case tc.wantErr == "" && (err != nil || cfg.RunDurability != tc.want):
			t.Errorf("%q: %q, %v; want %q", tc.env, cfg.RunDurability, err, tc.want)
		}
	}
}
