package scripts

import (
	"errors"
	"strings"
	"testing"
)

func TestLoadWebhookTokenSecret(t *testing.T) {
	t.Parallel()
	p, err := Load("p", 1, project("project: p\noperations:\n  - name: A\n    script: operations/a.js\n    webhook: {path: a, tokenSecret: HOOK_TOKEN}\n"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := p.Operation("A"); o.Webhook.TokenSecret != "HOOK_TOKEN" {
		t.Fatalf("tokenSecret %q, want HOOK_TOKEN", o.Webhook.TokenSecret)
	}

	for _, tt := range []struct{ value, want string }{
		{"1TOKEN", `opsrunner.yaml:5:37: operations[0].webhook.tokenSecret: tokenSecret "1TOKEN" is not a valid secret name`},
		{"HOOK-TOKEN", `opsrunner.yaml:5:37: operations[0].webhook.tokenSecret: tokenSecret "HOOK-TOKEN" is not a valid secret name`},
		{`""`, `opsrunner.yaml:5:37: operations[0].webhook.tokenSecret: tokenSecret "" is not a valid secret name`},
	} {
		_, err := Load("p", 1, project("project: p\noperations:\n  - name: A\n    script: operations/a.js\n    webhook: {path: a, tokenSecret: "+tt.value+"}\n"), LoadOptions{})
		var es Errors
		if !errors.As(err, &es) || len(es) != 1 || !strings.HasPrefix(es[0].Error(), tt.want) {
			t.Errorf("tokenSecret %s: got %v, want %q", tt.value, err, tt.want)
		}
	}
}
