package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dop251/goja"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// Host API functions. Each is bound once per runtime and reads the current
// run (v.cur) and its innermost frame.

func (v *vm) active() (*run, *frame) {
	r := v.cur
	if r == nil || len(r.frames) == 0 {
		v.throw("no operation is running")
	}
	return r, r.frames[len(r.frames)-1]
}

// keepInterrupt re-raises err if it is an interrupt or a stack overflow (a
// limit reached while a host function ran JS: a getter, toJSON, a Proxy
// trap), so that it keeps unwinding the script, as goja's own uncatchable
// errors do, instead of becoming a catchable Error.
func (v *vm) keepInterrupt(err error) {
	if le := limitReached(err); le != nil {
		panic(le)
	}
}

// limitReached returns the *goja.InterruptedError or
// *goja.StackOverflowError err holds (a limit reached while JS ran, which
// the script must not catch), else nil.
func limitReached(err error) error {
	var ie *goja.InterruptedError
	if errors.As(err, &ie) {
		return ie
	}
	var so *goja.StackOverflowError
	if errors.As(err, &so) {
		return so
	}
	return nil
}

func present(val goja.Value) bool {
	return val != nil && !goja.IsUndefined(val) && !goja.IsNull(val)
}

// jsRunOperation is RunOperation(ref, wait = true, input?). With wait
// false it queues the run with the input and the chain variables as JSON
// (see queuedVars) and returns the run id.
func (v *vm) jsRunOperation(call goja.FunctionCall) goja.Value {
	r, fr := v.active()
	ref := v.safeString(call.Argument(0))
	wait := true
	if a := call.Argument(1); present(a) {
		wait = a.ToBoolean()
	}
	event := fr.event
	if len(call.Arguments) > 2 && !goja.IsUndefined(call.Arguments[2]) {
		event = call.Arguments[2]
	}
	p, op, err := r.resolve(fr.project, ref)
	if err != nil {
		v.throw("RunOperation: %v", err)
	}
	if !wait {
		d := r.e.cfg.Dispatcher
		if d == nil {
			v.throw("RunOperation: async runs are not available")
		}
		goEvent, err := v.exportJSON(event)
		if err != nil {
			v.keepInterrupt(err)
			v.throw("RunOperation: input: %v", err)
		}
		vars := v.queuedVars(r)
		id, err := d.Dispatch(r.opContext(fr), Invocation{Project: p, Operation: op.Name, Trigger: TriggerOperation, Event: goEvent, Vars: vars})
		if err != nil {
			v.throw("RunOperation: queue %q: %v", op.Name, err)
		}
		return v.rt.ToValue(id)
	}
	val, f, abort := r.runNested(fr, p, op, event, fr.depth+1)
	if abort != nil {
		panic(abort.abort) // uncatchable: keeps unwinding the script
	}
	if f != nil {
		panic(v.operationError(op.Name, f))
	}
	if val == nil {
		return goja.Undefined()
	}
	return val
}

// queuedVars returns the chain variables a run queued by
// RunOperation(ref, false) starts with: each variable's value as
// JSON.stringify writes it, decoded to plain Go data (nil when there are
// none). The cluster's queue carries them as JSON, so the local queue
// gets the same values and a callee sees the same thing wherever it runs.
// As in JSON.stringify, members JSON omits (functions, undefined) are left
// out of an object, and a variable set to undefined is left out (it reads
// as undefined all the same). A variable JSON cannot carry at all — a
// function, a symbol, a cycle, a BigInt, a toJSON that throws or returns
// nothing — throws at the RunOperation call, naming the variable, instead
// of reaching the callee as undefined. A limit reached while a toJSON or
// getter runs keeps unwinding the script.
func (v *vm) queuedVars(r *run) map[string]any {
	if r.vars == nil {
		return nil
	}
	var vars map[string]any
	for _, k := range r.vars.Keys() {
		val := r.vars.Get(k)
		if val == nil || goja.IsUndefined(val) {
			continue
		}
		if kind := notJSON(val); kind != "" {
			v.throw("RunOperation: variable %q is a %s, which JSON cannot carry to a queued run", k, kind)
		}
		b, err := v.encodeJSON(val)
		if err != nil {
			v.keepInterrupt(err)
			v.throw("RunOperation: variable %q: %v", k, err)
		}
		if b == nil {
			v.throw("RunOperation: variable %q has no JSON value (its toJSON returned undefined, a function or a symbol)", k)
		}
		var x any
		if err := json.Unmarshal(b, &x); err != nil {
			v.throw("RunOperation: variable %q: value is not JSON-serialisable: %v", k, err)
		}
		if vars == nil {
			vars = make(map[string]any)
		}
		vars[k] = x
	}
	return vars
}

// notJSON names the kind of val when it is a function or a symbol, values
// JSON.stringify omits; else "".
func notJSON(val goja.Value) string {
	if _, ok := val.(*goja.Symbol); ok {
		return "symbol"
	}
	if _, ok := goja.AssertFunction(val); ok {
		return "function"
	}
	return ""
}

// resolve finds the operation a RunOperation reference names: a name in
// own, "project/name", or the seed's "<TAG>Operations/name</TAG>". Another
// project's operation is found only when that project exports it to own.
func (r *run) resolve(own *scripts.Project, ref string) (*scripts.Project, *scripts.Operation, error) {
	ref = strings.TrimSpace(ref)
	if strings.HasPrefix(ref, "<TAG>") && strings.HasSuffix(ref, "</TAG>") {
		ref = strings.TrimSuffix(strings.TrimPrefix(ref, "<TAG>"), "</TAG>")
		ref = strings.TrimPrefix(ref, "Operations/")
	}
	if op := findOperation(own, ref); op != nil {
		return own, op, nil
	}
	if i := strings.Index(ref, "/"); i > 0 {
		pname, name := ref[:i], ref[i+1:]
		p := own
		if pname != own.Name {
			var ok bool
			if r.e.cfg.Projects != nil {
				p, ok = r.e.cfg.Projects.Project(pname)
			}
			if !ok || p == nil || p.Manifest == nil {
				return nil, nil, fmt.Errorf("unknown project %q", pname)
			}
		}
		if op := findOperation(p, name); op != nil {
			if err := exported(own, p, op); err != nil {
				return nil, nil, err
			}
			return p, op, nil
		}
	}
	return nil, nil, fmt.Errorf("unknown operation %q", ref)
}

// exported returns nil when a script of caller may run op of p: p is the
// caller itself, or p's manifest exports op to the caller; else an error
// naming both projects and the export that would allow the call.
func exported(caller, p *scripts.Project, op *scripts.Operation) error {
	if p.Name == caller.Name || p.ExportsTo(op.Name, caller.Name) {
		return nil
	}
	return fmt.Errorf("project %q does not export operation %q to project %q: add {operation: %s, to: [%s]} to exports in %s's %s",
		p.Name, op.Name, caller.Name, op.Name, caller.Name, p.Name, scripts.ManifestFile)
}

// jsAcknowledge is Acknowledge(action, messageId?).
func (v *vm) jsAcknowledge(call goja.FunctionCall) goja.Value {
	r, fr := v.active()
	action := v.safeString(call.Argument(0))
	var act string
	switch {
	case strings.EqualFold(action, scripts.ActionCommit):
		act = scripts.ActionCommit
	case strings.EqualFold(action, scripts.ActionRollback):
		act = scripts.ActionRollback
	default:
		v.throw("Acknowledge: unknown action %q (want %s or %s)", action, scripts.ActionCommit, scripts.ActionRollback)
	}
	if r.inv.Message == nil {
		v.throw("Acknowledge: this run handles no message")
	}
	if id := call.Argument(1); present(id) {
		if s := v.safeString(id); s != r.inv.Message.ID() {
			v.throw("Acknowledge: message %q is not this run's message", s)
		}
	}
	if err := r.acknowledge(r.opContext(fr), act, fmt.Errorf("rolled back by Acknowledge in operation %q", fr.op.Name)); err != nil {
		v.throw("Acknowledge: %v", err)
	}
	return goja.Undefined()
}

func (v *vm) jsMessageCommit(call goja.FunctionCall) goja.Value {
	r, fr := v.active()
	if err := r.acknowledge(r.opContext(fr), scripts.ActionCommit, nil); err != nil {
		v.throw("message.commit: %v", err)
	}
	return goja.Undefined()
}

func (v *vm) jsMessageRollback(call goja.FunctionCall) goja.Value {
	r, fr := v.active()
	cause := r.rollbackCause(fr.op.Name)
	if a := call.Argument(0); present(a) {
		cause = errors.New(r.redact(v.safeString(a)))
	}
	if err := r.acknowledge(r.opContext(fr), scripts.ActionRollback, cause); err != nil {
		v.throw("message.rollback: %v", err)
	}
	return goja.Undefined()
}

// jsSendMessage is SendMessage(destination, body, opts?).
func (v *vm) jsSendMessage(call goja.FunctionCall) goja.Value {
	r, fr := v.active()
	dest := v.safeString(call.Argument(0))
	if !present(call.Argument(0)) || dest == "" {
		v.throw("SendMessage: destination is required")
	}
	headers := map[string]string{}
	var body []byte
	switch b := call.Argument(1); {
	case goja.IsUndefined(b):
	case isString(b):
		body = []byte(b.String())
	default:
		s, err := v.stringifyBounded(b, v.e.cfg.MaxAllocBytes)
		if err != nil {
			v.keepInterrupt(err)
			v.throw("SendMessage: body: %v", err)
		}
		body = []byte(s.String())
		headers["content-type"] = "application/json"
	}
	if o, ok := call.Argument(2).(*goja.Object); ok {
		if h, ok := o.Get("headers").(*goja.Object); ok {
			for _, k := range h.Keys() {
				headers[k] = v.safeString(h.Get(k))
			}
		}
		opt := func(name, header string, conv func(goja.Value) string) {
			if val := o.Get(name); present(val) {
				headers[header] = conv(val)
			}
		}
		str := v.safeString
		opt("persistent", "persistent", func(val goja.Value) string { return strconv.FormatBool(val.ToBoolean()) })
		opt("priority", "priority", func(val goja.Value) string { return strconv.FormatInt(val.ToInteger(), 10) })
		opt("correlationId", "correlation-id", str)
		opt("replyTo", "reply-to", str)
		opt("type", "type", str)
		opt("ackTimeout", "JBXAcknowledgmentTimeout", func(val goja.Value) string { return strconv.FormatInt(val.ToInteger(), 10) })
	}
	if c := r.e.cfg.Confine; c != nil {
		if err := c(fr.project.Name, dest); err != nil {
			v.throw("SendMessage: %v", err)
		}
	}
	var err error
	switch {
	case r.inv.Message != nil:
		err = r.inv.Message.Send(r.opContext(fr), dest, body, headers)
	case r.e.cfg.Sender != nil:
		err = r.e.cfg.Sender.Send(r.opContext(fr), dest, body, headers)
	default:
		v.throw("SendMessage: no broker connection")
	}
	if err != nil {
		v.throw("SendMessage %s: %v", dest, err)
	}
	return goja.Undefined()
}

func isString(val goja.Value) bool {
	if _, ok := val.(*goja.Object); ok {
		return false
	}
	_, ok := val.Export().(string)
	return ok
}

func (v *vm) jsSet(call goja.FunctionCall) goja.Value {
	r, _ := v.active()
	if err := r.varsObject().Set(v.safeString(call.Argument(0)), call.Argument(1)); err != nil {
		v.throw("Set: %v", err)
	}
	return goja.Undefined()
}

func (v *vm) jsGet(call goja.FunctionCall) goja.Value {
	r, _ := v.active()
	val := r.varsObject().Get(v.safeString(call.Argument(0)))
	if val == nil {
		return goja.Undefined()
	}
	return val
}

func (v *vm) jsVars(goja.FunctionCall) goja.Value {
	if v.cur == nil {
		return goja.Undefined()
	}
	return v.cur.varsObject()
}

// jsRaiseError is RaiseError(message): it fails the operation with message.
func (v *vm) jsRaiseError(call goja.FunctionCall) goja.Value {
	r, _ := v.active()
	msg := "RaiseError"
	if a := call.Argument(0); present(a) {
		msg = v.safeString(a)
	}
	obj, err := v.rt.New(v.errorCtor, v.rt.ToValue(msg))
	if err != nil {
		panic(v.rt.NewGoError(err))
	}
	r.raised, r.raisedMsg = obj, msg
	panic(obj)
}

func (v *vm) jsGetLastError(goja.FunctionCall) goja.Value {
	r, _ := v.active()
	return v.rt.ToValue(r.lastErr)
}

func (v *vm) logger(level string) func(goja.FunctionCall) goja.Value {
	return func(call goja.FunctionCall) goja.Value {
		r := v.cur
		if r == nil {
			return goja.Undefined()
		}
		if len(r.logs) >= maxLogLines {
			r.logDropped++
			return goja.Undefined()
		}
		var b strings.Builder
		for i, a := range call.Arguments {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(v.logString(a))
			if b.Len() > maxLogLineBytes {
				break
			}
		}
		msg := b.String()
		if len(msg) > maxLogLineBytes {
			msg = strings.ToValidUTF8(msg[:maxLogLineBytes], "") + "… [truncated]"
		}
		r.log(level, msg)
		return goja.Undefined()
	}
}

// log adds a line to the run's log, within maxLogLines.
func (r *run) log(level, msg string) {
	if len(r.logs) >= maxLogLines {
		r.logDropped++
		return
	}
	r.logs = append(r.logs, store.LogLine{Time: time.Now(), Level: level, Message: msg})
}

// maxLogJSON bounds the JSON of a logged value; a line keeps its first
// maxLogLineBytes anyway, and a larger value logs as its toString.
const maxLogJSON = 1 << 20

func (v *vm) logString(a goja.Value) string {
	obj, ok := a.(*goja.Object)
	if !ok {
		return v.safeString(a)
	}
	switch obj.ClassName() {
	case "Error", "Function":
		return v.safeString(a)
	}
	s, err := v.stringifyBounded(a, maxLogJSON)
	if err != nil {
		v.keepInterrupt(err)
	}
	if err != nil || s == nil || goja.IsUndefined(s) {
		return v.safeString(a)
	}
	return s.String()
}

func (r *run) finishLogs() []store.LogLine {
	if r.logDropped > 0 {
		r.logs = append(r.logs, store.LogLine{Time: time.Now(), Level: "warn",
			Message: fmt.Sprintf("log truncated: %d more lines dropped (limit %d lines per run)", r.logDropped, maxLogLines)})
		r.logDropped = 0
	}
	return r.logs
}

// toJS deep-copies plain Go data into native JS values. Map keys become own
// data properties (as JSON.parse makes them: a "__proto__" key does not set
// the prototype, a key named like a frozen Object.prototype method is kept).
func (v *vm) toJS(x any) goja.Value {
	rt := v.rt
	switch x := x.(type) {
	case nil:
		return goja.Null()
	case goja.Value:
		return x
	case string, bool, float64, float32, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return rt.ToValue(x)
	case json.Number:
		f, _ := x.Float64()
		return rt.ToValue(f)
	case []byte:
		return rt.ToValue(string(x))
	case func() any:
		if x == nil {
			return goja.Null()
		}
		return v.toJS(x())
	case json.RawMessage:
		p := jsonParser{v: v, rt: rt, s: string(x)}
		if val, ok := p.parse(); ok {
			return val
		}
		var y any
		if err := json.Unmarshal(x, &y); err != nil {
			return rt.ToValue(string(x))
		}
		return v.toJS(y)
	case map[string]any: // keys sorted: a script sees (and returns) the same order every run
		o := rt.NewObject()
		for _, k := range slices.Sorted(maps.Keys(x)) {
			_ = v.createDataProperty(o, k, v.toJS(x[k]))
		}
		return o
	case map[string]string:
		o := rt.NewObject()
		for _, k := range slices.Sorted(maps.Keys(x)) {
			_ = v.createDataProperty(o, k, rt.ToValue(x[k]))
		}
		return o
	case []any:
		items := make([]any, len(x))
		for i, e := range x {
			items[i] = v.toJS(e)
		}
		return rt.NewArray(items...)
	case []string:
		items := make([]any, len(x))
		for i, e := range x {
			items[i] = e
		}
		return rt.NewArray(items...)
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return rt.ToValue(fmt.Sprint(x))
		}
		val, err := v.parse(goja.Undefined(), rt.ToValue(string(b)))
		if err != nil {
			return rt.ToValue(string(b))
		}
		return val
	}
}

// createDataProperty defines o[k] = val as an own, writable, enumerable,
// configurable data property of a new ordinary object o (CreateDataProperty).
// A plain Set does the same, and is cheaper, unless Object.prototype has k
// (a setter such as __proto__, or a frozen method): those keys are defined.
func (v *vm) createDataProperty(o *goja.Object, k string, val goja.Value) error {
	if _, inherited := v.protoKeys[k]; inherited {
		return o.DefineDataProperty(k, val, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_TRUE)
	}
	return o.Set(k, val)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "")
	}
	return s
}
