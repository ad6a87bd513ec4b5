package scripts

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/opsrunner/opsrunner/egress"
)

// Bounds checked at deploy.
const (
	MaxOperationTimeout = time.Hour
	MaxAckTimeout       = 24 * time.Hour
	MaxConsumers        = 256
)

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validator checks a parsed manifest against the bundle, applies defaults
// and collects every problem with its manifest position.
type validator struct {
	m     *Manifest
	nodes nodeIndex
	files map[string][]byte
	opts  LoadOptions
	errs  Errors
	ops   map[string]int // operation name → index

	looped    bool                  // some chain loops: chain bounds are skipped
	chainMemo map[int]time.Duration // chainTime results
}

func (v *validator) errf(field, format string, args ...any) {
	ve := &ValidationError{File: ManifestFile, Field: field, Message: fmt.Sprintf(format, args...)}
	if n := v.nodes.at(field); n != nil {
		ve.Line, ve.Column = n.Line, n.Column
	}
	v.errs = append(v.errs, ve)
}

// given reports whether field was written in the manifest.
func (v *validator) given(field string) bool { _, ok := v.nodes[field]; return ok }

func (v *validator) validate(name string) {
	m := v.m
	switch {
	case strings.TrimSpace(m.Project) == "":
		v.errf("project", "project is required")
	case name != "" && m.Project != name:
		v.errf("project", "project %q does not match the name it is deployed as, %q", m.Project, name)
	case name == "": // the manifest names the project: the deploy rule holds
		if err := ValidProjectName(m.Project); err != nil {
			v.errf("project", "%v", err)
		}
	default:
		if err := checkName(m.Project); err != nil {
			v.errf("project", "project name: %v", err)
		} else if strings.Contains(m.Project, "/") {
			v.errf("project", "project name %q must not contain \"/\"", m.Project)
		}
	}
	if len(m.Operations) == 0 {
		v.errf("operations", "at least one operation is required")
	}
	v.ops = map[string]int{}
	for i := range m.Operations {
		o := &m.Operations[i]
		f := fmt.Sprintf("operations[%d]", i)
		if err := checkName(o.Name); err != nil {
			v.errf(f+".name", "operation name: %v", err)
			continue
		}
		if j, dup := v.ops[o.Name]; dup {
			v.errf(f+".name", "duplicate operation name %q (also operations[%d])", o.Name, j)
			continue
		}
		v.ops[o.Name] = i
	}
	hooks := map[string]string{} // unescaped path → operation
	for i := range m.Operations {
		v.operation(i, hooks)
	}
	v.cycles()
	v.env()
	v.exports()
	seen := map[string]int{}
	for i := range m.Listeners {
		l := &m.Listeners[i]
		f := fmt.Sprintf("listeners[%d]", i)
		if err := checkName(l.Name); err != nil {
			v.errf(f+".name", "listener name: %v", err)
		} else if strings.Contains(l.Name, "/") {
			v.errf(f+".name", "listener name %q must not contain \"/\"", l.Name)
		} else if j, dup := seen[l.Name]; dup {
			v.errf(f+".name", "duplicate listener name %q (also listeners[%d])", l.Name, j)
		} else {
			seen[l.Name] = i
		}
		v.listener(i)
	}
	v.schedules()
	v.checkEgress()
}

// checkEgress reports each bad entry of the egress list at its own position.
func (v *validator) checkEgress() {
	for i, e := range v.m.Egress {
		_, err := egress.ParsePolicy([]string{e})
		var ee *egress.EntryError
		if errors.As(err, &ee) {
			v.errf(fmt.Sprintf("egress[%d]", i), "entry %q %s", e, ee.Reason)
		} else if err != nil {
			v.errf(fmt.Sprintf("egress[%d]", i), "%v", err)
		}
	}
}

// checkName accepts free text that is not blank and holds no control characters.
func checkName(s string) error {
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("must not be empty")
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return fmt.Errorf("%q contains control characters", s)
	}
	return nil
}

func (v *validator) operation(i int, hooks map[string]string) {
	o := &v.m.Operations[i]
	f := fmt.Sprintf("operations[%d]", i)
	switch o.Type {
	case "", TypeScript:
		o.Type = TypeScript
		if o.Action != "" {
			v.errf(f+".action", "action is only for operations of type acknowledge")
		}
		if o.Script == "" {
			v.errf(f, "operation %q needs a script (a .js file of the bundle)", o.Name)
		} else if p, ok := v.jsFile(f+".script", o.Script); ok {
			o.Script = p
		}
	case TypeAcknowledge:
		if o.Script != "" {
			v.errf(f+".script", "an acknowledge operation takes no script")
		}
		if o.Action == "" {
			v.errf(f, "acknowledge operation %q needs an action: %s or %s", o.Name, ActionCommit, ActionRollback)
		} else if a, err := ParseAction(o.Action); err != nil {
			v.errf(f+".action", "%v", err)
		} else {
			o.Action = a
		}
	default:
		v.errf(f+".type", "unknown operation type %q: use %s or %s", o.Type, TypeScript, TypeAcknowledge)
	}
	if v.given(f+".timeout") && (o.Timeout <= 0 || time.Duration(o.Timeout) > MaxOperationTimeout) {
		v.errf(f+".timeout", "timeout must be more than 0 and at most %s, got %s", Duration(MaxOperationTimeout), o.Timeout)
	}
	for _, chain := range []struct {
		key   string
		names []string
	}{{"onSuccess", o.OnSuccess}, {"onFailure", o.OnFailure}} {
		for j, n := range chain.names {
			if _, ok := v.ops[n]; !ok {
				v.errf(fmt.Sprintf("%s.%s[%d]", f, chain.key, j), "%s names unknown operation %q", chain.key, n)
			}
		}
	}
	if o.Webhook == nil {
		return
	}
	if o.Webhook.Path == "" {
		o.Webhook.Path = url.PathEscape(o.Name)
	} else if err := checkSegment(o.Webhook.Path); err != nil {
		v.errf(f+".webhook.path", "%v", err)
		return
	}
	key, _ := url.PathUnescape(o.Webhook.Path)
	if other, dup := hooks[key]; dup {
		v.errf(f+".webhook.path", "webhook path %q is already used by operation %q", o.Webhook.Path, other)
	} else {
		hooks[key] = o.Name
	}
	if o.Webhook.SecretEnv != "" && !envNameRE.MatchString(o.Webhook.SecretEnv) {
		v.errf(f+".webhook.secretEnv", "secretEnv %q is not a valid environment variable name", o.Webhook.SecretEnv)
	}
	v.tokenSecret(f+".webhook.tokenSecret", o.Webhook.TokenSecret)
}

// checkSegment accepts one URL path segment that needs no escaping.
func checkSegment(p string) error {
	if p == "." || p == ".." || url.PathEscape(p) != p {
		return fmt.Errorf("webhook path %q is not a valid URL path segment: use letters, digits and -._~ (no \"/\" or spaces)", p)
	}
	return nil
}

// jsFile checks a bundle path to a script and returns it cleaned.
func (v *validator) jsFile(field, p string) (string, bool) {
	c, err := cleanBundlePath(p)
	if err != nil || c == "" {
		v.errf(field, "script path %q must be a relative path inside the bundle", p)
		return "", false
	}
	if !strings.HasSuffix(c, ".js") {
		v.errf(field, "script %q must be a .js file", p)
		return "", false
	}
	if _, ok := v.files[c]; !ok {
		v.errf(field, "script %q is not in the bundle", p)
		return "", false
	}
	return c, true
}

// cycles reports onSuccess/onFailure chains that lead back to themselves.
func (v *validator) cycles() {
	const (
		unseen = iota
		visiting
		done
	)
	state := make([]int, len(v.m.Operations))
	var visit func(i int, trail []string) bool
	visit = func(i int, trail []string) bool {
		state[i] = visiting
		o := &v.m.Operations[i]
		trail = append(trail, o.Name)
		for _, next := range append(append([]string(nil), o.OnSuccess...), o.OnFailure...) {
			j, ok := v.ops[next]
			if !ok {
				continue
			}
			if state[j] == visiting {
				v.errf(fmt.Sprintf("operations[%d]", j), "operation chain loops: %s → %s", strings.Join(trail, " → "), next)
				return true
			}
			if state[j] == unseen && visit(j, trail) {
				return true
			}
		}
		state[i] = done
		return false
	}
	for i, o := range v.m.Operations {
		if j, ok := v.ops[o.Name]; !ok || j != i || state[i] != unseen {
			continue
		}
		if visit(i, nil) {
			v.looped = true
			return // one loop report is enough; chain bounds below are skipped
		}
	}
}

func isQueue(d string) bool { return strings.HasPrefix(d, "/queue/") && len(d) > len("/queue/") }
func isTopic(d string) bool { return strings.HasPrefix(d, "/topic/") && len(d) > len("/topic/") }

func (v *validator) listener(i int) {
	l := &v.m.Listeners[i]
	f := fmt.Sprintf("listeners[%d]", i)
	topic := isTopic(l.Destination)
	if !topic && !isQueue(l.Destination) {
		v.errf(f+".destination", "destination %q must start with /queue/ or /topic/", l.Destination)
	}
	if l.Connection == "" {
		l.Connection = "default"
	}
	switch l.AckMode {
	case "":
		l.AckMode = AckOnSuccess
	case AckOnSuccess, AckExplicit, AckAuto:
	default:
		v.errf(f+".ackMode", "unknown ackMode %q: use %s, %s or %s", l.AckMode, AckOnSuccess, AckExplicit, AckAuto)
	}
	if v.given(f+".ackTimeout") && (l.AckTimeout <= 0 || time.Duration(l.AckTimeout) > MaxAckTimeout) {
		v.errf(f+".ackTimeout", "ackTimeout must be more than 0 and at most %s, got %s", Duration(MaxAckTimeout), l.AckTimeout)
	}
	if l.AckTimeout <= 0 {
		l.AckTimeout = Duration(DefaultAckTimeout)
	}
	switch {
	case l.Consumers < 0 || l.Consumers > MaxConsumers:
		v.errf(f+".consumers", "consumers must be between 0 and %d, got %d", MaxConsumers, l.Consumers)
	case l.Consumers == 0:
		l.Consumers = 1
	}
	if l.Prefetch < 0 {
		v.errf(f+".prefetch", "prefetch must not be negative, got %d", l.Prefetch)
	}
	if len(l.Operations) == 0 {
		v.errf(f+".operations", "listener %q needs at least one operation", l.Name)
	}
	bound := map[string]bool{}
	for j, n := range l.Operations {
		fj := fmt.Sprintf("%s.operations[%d]", f, j)
		if _, ok := v.ops[n]; !ok {
			v.errf(fj, "listener %q names unknown operation %q", l.Name, n)
		} else if bound[n] {
			v.errf(fj, "listener %q names operation %q twice", l.Name, n)
		}
		bound[n] = true
	}
	if l.Durable && !topic {
		v.errf(f+".durable", "durable subscriptions are only for topics")
	}
	if l.SubscriberName != "" && !l.Durable {
		v.errf(f+".subscriberName", "subscriberName needs durable: true")
	}
	if l.Filter != "" {
		if p, ok := v.jsFile(f+".filter", l.Filter); ok {
			l.Filter = p
		}
	}
	if v.given(f+".dedupHeader") && (strings.TrimSpace(l.DedupHeader) == "" || strings.ContainsAny(l.DedupHeader, ":\r\n")) {
		v.errf(f+".dedupHeader", "dedupHeader %q is not a valid header name", l.DedupHeader)
	}
	v.redelivery(f+".redelivery", l)
	switch l.Fanout {
	case "":
		if topic {
			l.Fanout = FanoutOnce
		}
	case FanoutOnce, FanoutEach:
		if !topic {
			v.errf(f+".fanout", "fanout is only for topics")
		}
	default:
		v.errf(f+".fanout", "unknown fanout %q: use %s or %s", l.Fanout, FanoutOnce, FanoutEach)
	}
	switch l.Mode {
	case "":
		l.Mode = ModePerMessage
	case ModePerMessage, ModeBatch:
	default:
		v.errf(f+".mode", "unknown mode %q: use %s or %s", l.Mode, ModePerMessage, ModeBatch)
	}
	if v.given(f+".callbackTimeout") && l.CallbackTimeout <= 0 {
		v.errf(f+".callbackTimeout", "callbackTimeout must be more than 0")
	}
	if err := l.Placement.check(); err != nil {
		v.errf(f+".placement", "%v", err)
	} else if l.Placement.Mode == "" {
		l.Placement.Mode = PlaceAny
	}
	v.timeBudget(f, l)
	if v.opts.CheckListener != nil {
		if err := v.opts.CheckListener(l); err != nil {
			v.errf(f, "listener %q: %v", l.Name, err)
		}
	}
}

func (v *validator) redelivery(f string, l *Listener) {
	r := &l.Redelivery
	if r.MaxRedeliveries < -1 {
		v.errf(f+".maxRedeliveries", "maxRedeliveries must be -1 (never dead-letter) or more, got %d", r.MaxRedeliveries)
	}
	if r.MaxRedeliveries == 0 && !v.given(f+".maxRedeliveries") {
		r.MaxRedeliveries = DefaultMaxRedeliveries
	}
	// Zero is a value of its own for the delays (no wait), so only what
	// the manifest leaves out gets a default.
	if !v.given(f + ".initialDelay") {
		r.InitialDelay = Duration(DefaultInitialDelay)
	}
	if !v.given(f + ".multiplier") {
		r.Multiplier = DefaultMultiplier
	} else if r.Multiplier < 1 {
		v.errf(f+".multiplier", "multiplier must be at least 1, got %g", r.Multiplier)
	}
	if !v.given(f + ".maxDelay") {
		r.MaxDelay = max(Duration(DefaultMaxDelay), r.InitialDelay)
	} else if r.MaxDelay < r.InitialDelay {
		v.errf(f+".maxDelay", "maxDelay %s is less than initialDelay %s", r.MaxDelay, r.InitialDelay)
	}
	if r.DeadLetter == "" {
		if l.Destination != "" {
			r.DeadLetter = l.Destination + ".DLQ"
		}
	} else if !isQueue(r.DeadLetter) && !isTopic(r.DeadLetter) {
		v.errf(f+".deadLetter", "deadLetter %q must start with /queue/ or /topic/", r.DeadLetter)
	} else if r.DeadLetter == l.Destination {
		v.errf(f+".deadLetter", "deadLetter must differ from the listener's destination")
	}
	if r.Retention < -1 {
		v.errf(f+".retention", "retention must be -1 (forever) or more minutes, got %d", r.Retention)
	}
}

// timeBudget refuses a listener whose bound operations may outlive its ack
// timeout: the operation's own limit, then the worst case along its
// onSuccess/onFailure chain (acknowledge operations count as instant). An
// auto-acknowledged listener has nothing to time out and is not checked.
func (v *validator) timeBudget(f string, l *Listener) {
	if l.AckMode == AckAuto {
		return
	}
	ack := time.Duration(l.AckTimeout)
	for j, n := range l.Operations {
		i, ok := v.ops[n]
		if !ok {
			continue
		}
		o := &v.m.Operations[i]
		fj := fmt.Sprintf("%s.operations[%d]", f, j)
		if t := o.EffectiveTimeout(); o.Type != TypeAcknowledge && t > ack {
			v.errf(fj, "listener %s: operation %q timeout %s exceeds the listener's ackTimeout %s; raise ackTimeout or lower the timeout",
				l.Name, o.Name, Duration(t), Duration(ack))
			continue
		}
		if v.looped {
			continue
		}
		if t := v.chainTime(i); t > ack {
			v.errf(fj, "listener %s: operation %q with its onSuccess/onFailure chain may take %s, more than the listener's ackTimeout %s; raise ackTimeout or lower the timeouts",
				l.Name, o.Name, Duration(t), Duration(ack))
		}
	}
}

// chainTime is the longest an operation and the chain it starts may take.
// It must not be called when chains loop.
func (v *validator) chainTime(i int) time.Duration {
	if t, ok := v.chainMemo[i]; ok {
		return t
	}
	o := &v.m.Operations[i]
	var own time.Duration
	if o.Type != TypeAcknowledge {
		own = o.EffectiveTimeout()
	}
	var worst time.Duration
	for _, chain := range [][]string{o.OnSuccess, o.OnFailure} {
		var sum time.Duration
		for _, n := range chain {
			if j, ok := v.ops[n]; ok {
				sum += v.chainTime(j)
			}
		}
		worst = max(worst, sum)
	}
	if v.chainMemo == nil {
		v.chainMemo = map[int]time.Duration{}
	}
	v.chainMemo[i] = own + worst
	return own + worst
}
