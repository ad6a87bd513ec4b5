package runtime

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// secretTable is a Secrets of fixed values by "project/name".
type secretTable map[string]string

func (s secretTable) Secret(_ context.Context, project, name string) (string, bool, error) {
	if project == "p" && name == "BROKEN" {
		return "", false, errors.New("store unreachable")
	}
	v, ok := s[project+"/"+name]
	return v, ok, nil
}

func TestEnvReadsTheManifestsSettings(t *testing.T) {
	e := newEngine(t, Config{})
	p := newProject(t, "p", op{name: "main", src: `function handle() {
		"use strict";
		let threw = false;
		try { env.API_BASE = "changed"; } catch (e) { threw = true; }
		return [env.API_BASE, env.MISSING, threw, Object.keys(env)];
	}`})
	p.Manifest.Env = map[string]string{"API_BASE": "https://api.example.com", "B": "2"}
	res := e.Run(context.Background(), Invocation{Project: p, Operation: "main", Trigger: TriggerWebhook})
	want := []any{"https://api.example.com", nil, true, []any{"API_BASE", "B"}}
	if res.Err != nil || !equalJSON(res.value(), want) {
		t.Fatalf("result %v, err %v; want %v", res.value(), res.Err, want)
	}
}

func TestEnvIsEachProjectsOwnAcrossRuns(t *testing.T) {
	e := newEngine(t, Config{Runtimes: 1})
	src := `function handle() { return env.NAME; }`
	a, b := newProject(t, "a", op{name: "main", src: src}), newProject(t, "b", op{name: "main", src: src})
	a.Manifest.Env, b.Manifest.Env = map[string]string{"NAME": "a"}, map[string]string{"NAME": "b"}
	for _, p := range []*scripts.Project{a, a, b, a, b, b} {
		res := e.Run(context.Background(), Invocation{Project: p, Operation: "main", Trigger: TriggerWebhook})
		if res.Err != nil || res.value() != p.Name {
			t.Fatalf("project %s read env.NAME %v, err %v", p.Name, res.value(), res.Err)
		}
	}
}

func TestSecretsReadTheProjectsOwnAndAreRedacted(t *testing.T) {
	const key = "sk-live-0123456789"
	e := newEngine(t, Config{Secrets: secretTable{"p/API_KEY": key, "other/API_KEY": "not-yours"}})
	res := runOne(t, e, `function handle() {
		log.info("the key is " + secrets.API_KEY);
		console.log({auth: "Bearer " + secrets.API_KEY});
		if (secrets.UNSET !== undefined || "UNSET" in secrets) throw new Error("unset secret read as set");
		secrets.API_KEY = "x";
		throw new Error("failed with " + secrets.API_KEY);
	}`, nil)
	if res.Status != store.StatusFailed {
		t.Fatalf("status %s, want failed", res.Status)
	}
	var text []string
	for _, l := range res.Logs {
		text = append(text, l.Message)
	}
	for _, s := range res.Steps {
		text = append(text, s.Error)
	}
	text = append(text, res.Err.Error())
	all := strings.Join(text, "\n")
	if strings.Contains(all, key) {
		t.Fatalf("the secret's value is in what the run left:\n%s", all)
	}
	if !strings.Contains(all, "the key is ***") || !strings.Contains(res.Err.Error(), "failed with ***") {
		t.Fatalf("expected redacted lines, got:\n%s", all)
	}
	if scriptErr(t, res.Err).Line == 0 {
		t.Fatalf("the redacted error lost its position: %v", res.Err)
	}
}

func TestARedactedResultKeepsTheCallersAnswer(t *testing.T) {
	const key = `tok"en\value`
	e := newEngine(t, Config{Secrets: secretTable{"p/T": key}})
	res := runOne(t, e, `function handle() { return {token: secrets.T}; }`, nil)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if !strings.Contains(string(res.JSON), `tok\"en\\value`) {
		t.Fatalf("the caller's result %s lacks the value the script returned", res.JSON)
	}
	if kept := string(res.Redact(res.JSON)); kept != `{"token":"***"}` {
		t.Fatalf("kept result %s, want the value redacted", kept)
	}
}

func TestASecretStoreFailureIsAScriptError(t *testing.T) {
	e := newEngine(t, Config{Secrets: secretTable{}})
	res := runOne(t, e, `function handle() { try { return secrets.BROKEN; } catch (e) { return e.message; } }`, nil)
	if res.Err != nil || res.value() != "secrets.BROKEN: store unreachable" {
		t.Fatalf("result %v, err %v", res.value(), res.Err)
	}
}

func TestSecretsOfAnotherProjectAreNotVisible(t *testing.T) {
	e := newEngine(t, Config{Secrets: secretTable{"p/K": "mine", "q/K": "theirs"}, Projects: nil})
	p := newProject(t, "p", op{name: "main", src: `function handle() { return [secrets.K, Object.getPrototypeOf(secrets)]; }`})
	res := e.Run(context.Background(), Invocation{Project: p, Operation: "main", Trigger: TriggerWebhook})
	if res.Err != nil || !equalJSON(res.value(), []any{"mine", nil}) {
		t.Fatalf("result %v, err %v", res.value(), res.Err)
	}
}
