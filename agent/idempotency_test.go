package agent_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"testing"

	"github.com/opsrunner/opsrunner/api"
	"github.com/opsrunner/opsrunner/store"
)

// digest is the hex SHA-256 of body, as api/webhook.go fills
// api.Invocation.BodyDigest.
func digest(body string) string {
	sum := sha256.Sum256([]byte(body))
	return hex.EncodeToString(sum[:])
}

// TestIdempotencyKeyWithAnotherBody: a repeated Idempotency-Key with the
// same body gets the first run's answer; with another body it is refused
// with 422 idempotency_key_mismatch (the IETF draft's and Stripe's rule),
// and no run starts.
func TestIdempotencyKeyWithAnotherBody(t *testing.T) {
	ta := startAgent(t, nil)
	ta.mustDeploy(t, "hooks", bundle(t, hooksFiles))
	p, ok := ta.Project("hooks")
	if !ok {
		t.Fatal("project hooks not live after deploy")
	}
	op, ok := p.Operation("counter")
	if !ok {
		t.Fatal("no operation counter")
	}
	ctx := context.Background()
	invoke := func(body string) (string, []byte, error) {
		run, resp, err := ta.Invoke(ctx, api.Invocation{Project: p, Operation: op, Event: map[string]any{"body": body},
			IdempotencyKey: "k-body", BodyDigest: digest(body)})
		if err != nil {
			return "", nil, err
		}
		if resp == nil {
			t.Fatalf("run %s answered nothing: %s %s", run.ID, run.Status, run.Error)
		}
		return run.ID, resp.Body, nil
	}

	firstID, firstBody, err := invoke(`{"n":1}`)
	if err != nil {
		t.Fatalf("first request: %v", err)
	}
	againID, againBody, err := invoke(`{"n":1}`)
	if err != nil || againID != firstID || string(againBody) != string(firstBody) {
		t.Fatalf("same key, same body: run %s %s, %v; want run %s %s", againID, againBody, err, firstID, firstBody)
	}
	_, _, err = invoke(`{"n":2}`)
	var apiErr *api.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnprocessableEntity || apiErr.Code != api.CodeIdempotencyMismatch {
		t.Fatalf("same key, another body: err %v, want a 422 %s", err, api.CodeIdempotencyMismatch)
	}
	runs, err := ta.Runs(ctx, store.RunFilter{Project: "hooks", Operation: "counter"})
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs of counter: %d (%v), want the first one only", len(runs), err)
	}
}
