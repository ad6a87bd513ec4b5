package runtime

import (
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/dop251/goja"
	"github.com/opsrunner/opsrunner/scripts"
)

// A script's settings: `env` (the manifest's env, not secret) and
// `secrets` (the project's secrets, read from Config.Secrets when a name
// is first read). Both are global accessors that give each run objects of
// its own, so nothing one run does to them reaches the next. Every secret
// value a run reads is redacted (***) from what the run leaves behind: its
// logs, errors, steps and the result kept in the run record (Redact).

// Secrets reads project secrets in plain text. Goroutine-safe; called on
// the script's goroutine.
type Secrets interface {
	// Secret returns the project's secret name; ok is false when unset.
	Secret(ctx context.Context, project, name string) (value string, ok bool, err error)
}

// redacted replaces a secret's value wherever the run's text shows it.
const redacted = "***"

// jsEnv is the getter of the global `env`: a frozen object of the calling
// project's manifest env. The runtime keeps the last one it made, for the
// same project's next runs: it is frozen, and so are its prototype and the
// other intrinsics, so a run can neither change it nor tell it was made
// before (making it was ~20 allocations of an I/O-bound webhook run).
func (v *vm) jsEnv(goja.FunctionCall) goja.Value {
	r := v.cur
	if r == nil || len(r.frames) == 0 {
		return goja.Undefined()
	}
	p := r.frames[len(r.frames)-1].project
	if v.env != nil && v.envOf == p {
		return v.env
	}
	o := v.rt.NewObject()
	env := p.Manifest.Env
	for _, k := range slices.Sorted(maps.Keys(env)) {
		_ = o.Set(k, env[k])
	}
	if _, err := v.freeze(goja.Undefined(), o); err != nil {
		panic(err)
	}
	v.env, v.envOf = o, p
	return o
}

// jsSecrets is the getter of the global `secrets`: an object whose
// properties read the calling project's secrets.
func (v *vm) jsSecrets(goja.FunctionCall) goja.Value {
	r := v.cur
	if r == nil || len(r.frames) == 0 {
		return goja.Undefined()
	}
	p := r.frames[len(r.frames)-1].project
	o := v.rt.NewDynamicObject(secretsObject{v: v, r: r, p: p})
	_ = o.SetPrototype(nil)
	return o
}

// secretsObject is `secrets` for one project in one run: read-only, with
// no enumerable names (listing them would read them all).
type secretsObject struct {
	v *vm
	r *run
	p *scripts.Project
}

func (s secretsObject) Get(name string) goja.Value {
	val, ok := s.r.secret(s.p, name)
	if !ok {
		return goja.Undefined()
	}
	return s.v.rt.ToValue(val)
}

func (s secretsObject) Has(name string) bool {
	_, ok := s.r.secret(s.p, name)
	return ok
}

func (s secretsObject) Set(string, goja.Value) bool { return false }
func (s secretsObject) Delete(string) bool          { return false }
func (s secretsObject) Keys() []string              { return nil }

// secret reads one of p's secrets, once per run and name, and remembers
// its value for redaction. A store failure throws.
func (r *run) secret(p *scripts.Project, name string) (string, bool) {
	key := p.Name + "\x00" + name
	if c, ok := r.secretCache[key]; ok {
		return c.value, c.ok
	}
	src := r.e.cfg.Secrets
	if src == nil {
		return "", false
	}
	val, ok, err := src.Secret(r.opContext(r.frames[0]), p.Name, name)
	if err != nil {
		r.v.throw("secrets.%s: %v", name, err)
	}
	if r.secretCache == nil {
		r.secretCache = map[string]secretRead{}
	}
	r.secretCache[key] = secretRead{val, ok}
	if ok && val != "" {
		r.secretValues = append(r.secretValues, val)
	}
	return val, ok
}

// secretRead is a secret as a run read it.
type secretRead struct {
	value string
	ok    bool
}

// redact replaces every secret value the run read in s.
func (r *run) redact(s string) string {
	return redactAll(s, r.secretValues)
}

func redactAll(s string, values []string) string {
	for _, val := range values {
		if strings.Contains(s, val) {
			s = strings.ReplaceAll(s, val, redacted)
		}
	}
	return s
}

// redactResult redacts the run's logs, steps and error in res.
func (r *run) redactResult(res *Result) {
	if len(r.secretValues) == 0 {
		return
	}
	// Longest first: a secret containing another is replaced whole.
	slices.SortFunc(r.secretValues, func(a, b string) int { return len(b) - len(a) })
	res.secrets = slices.Clone(r.secretValues)
	for i := range res.Logs {
		res.Logs[i].Message = r.redact(res.Logs[i].Message)
	}
	for i := range res.Steps {
		res.Steps[i].Error = r.redact(res.Steps[i].Error)
	}
	if res.Err != nil {
		if msg := r.redact(res.Err.Error()); msg != res.Err.Error() {
			res.Err = &redactedError{msg: msg, err: res.Err}
		}
	}
}

// redactedError is an error whose text had secret values in it: it says
// the same with them replaced, and still matches what it wraps (errors.Is
// and errors.As), whose own text must not be written anywhere.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// Redact returns b with the secret values the run read replaced: for what
// is kept of the result (a run record), since the result itself goes to
// the caller as the script made it. JSON escapes are matched too.
func (res Result) Redact(b []byte) []byte {
	if len(res.secrets) == 0 || b == nil {
		return b
	}
	s := string(b)
	for _, val := range res.secrets {
		s = strings.ReplaceAll(s, val, redacted)
		if q := jsonQuoted(val); q != val {
			s = strings.ReplaceAll(s, q, redacted)
		}
	}
	return []byte(s)
}

// jsonQuoted is val as it appears inside a JSON string.
func jsonQuoted(val string) string {
	q := appendString(nil, val)
	return string(q[1 : len(q)-1])
}
