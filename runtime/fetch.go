package runtime

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dop251/goja"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// Fetcher makes the HTTP requests of a script's fetch(): the agent's egress
// client, which applies the calling project's egress policy and the
// agent's bounds. Goroutine-safe; Fetch is called on a goroutine of its
// own and must end when ctx ends. Its errors are shown to the script as
// they are: they must name the host and never carry headers or bodies.
type Fetcher interface {
	Fetch(ctx context.Context, project *scripts.Project, req FetchRequest) (*FetchResponse, error)
}

// FetchRequest is one fetch() call.
type FetchRequest struct {
	Method string
	URL    string
	Header http.Header
	Body   []byte
	// Redirect is fetch's redirect option: "follow" (follow them, within
	// the agent's bound, each checked against the egress policy),
	// "manual" (return a redirect response as it is) or "error" (fail when
	// one is answered).
	Redirect string
}

// FetchResponse is a response read whole.
type FetchResponse struct {
	Status     int
	StatusText string
	Header     http.Header
	URL        string // after redirects
	Redirected bool
	Body       []byte
}

//go:embed js/fetch.js
var fetchSrc string

var fetchProgram = goja.MustCompile(internalPrefix+"fetch", fetchSrc, true)

// installFetch defines fetch, Headers, Response, AbortController and
// AbortSignal (js/fetch.js) over the host functions below.
func installFetch(v *vm) error {
	fn, err := v.rt.RunProgram(fetchProgram)
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	install, _ := goja.AssertFunction(fn)
	host := v.rt.NewObject()
	_ = host.Set("fetch", v.jsFetch)
	_ = host.Set("json", v.jsParseBody)
	_ = host.Set("decode", v.jsDecodeUTF8)
	_ = host.Set("encode", v.jsEncodeUTF8)
	ret, err := install(goja.Undefined(), host)
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	obj, _ := ret.(*goja.Object)
	if obj == nil {
		return errors.New("fetch: js/fetch.js returned no helpers")
	}
	var ok1, ok2 bool
	v.fetchReceived, ok1 = goja.AssertFunction(obj.Get("received"))
	v.fetchListen, ok2 = goja.AssertFunction(obj.Get("listen"))
	if !ok1 || !ok2 {
		return errors.New("fetch: js/fetch.js returned no helpers")
	}
	return nil
}

// Why a fetch's context ended, besides the operation's limit.
var (
	errFetchAborted = errors.New("fetch aborted")
	errFetchTimeout = errors.New("fetch timed out")
)

// fetchCall is one fetch in flight.
type fetchCall struct {
	req     FetchRequest
	project *scripts.Project
	timeout time.Duration // 0: none but the operation's
	// failure is the TypeError made at the script's fetch call, thrown
	// when the request fails; signal is its AbortSignal, nil for none.
	failure, signal *goja.Object
	resolve, reject func(any) error // the fetch's Promise
	opCtx           context.Context // the top-level operation's
	ctx             context.Context
	abort           context.CancelCauseFunc
	start           time.Time
}

// jsFetch is host.fetch(method, url, headerNames, headerValues, body,
// timeoutMs, redirect, failure, signal): it starts the request on a
// goroutine owned by the run's loop (it ends with the operation's context,
// or when signal aborts) and returns the fetch's Promise, settled on the
// run's loop (see fetchEnded).
func (v *vm) jsFetch(call goja.FunctionCall) goja.Value {
	r, fr := v.active()
	f := r.e.cfg.Fetcher
	if f == nil {
		v.throwType("fetch is not available on this agent")
	}
	l := r.eventLoop()
	if l.pending >= maxPending {
		v.throwRange("too many timers and fetches pending in one run (at most %d)", maxPending)
	}
	c := &fetchCall{req: v.fetchRequest(call), project: fr.project, start: time.Now()}
	c.failure, _ = call.Argument(7).(*goja.Object)
	c.signal, _ = call.Argument(8).(*goja.Object)
	// The top-level operation's context: a nested operation may return
	// before the request ends, and the operation's limit covers it all.
	c.opCtx = r.opContext(r.frames[0])
	c.ctx, c.abort = context.WithCancelCause(c.opCtx)
	if t := call.Argument(5); present(t) {
		c.timeout = max(delayOf(t), time.Nanosecond)
	}
	var promise *goja.Promise
	promise, c.resolve, c.reject = v.rt.NewPromise()
	l.nextID++
	id := l.nextID
	if l.aborts == nil {
		l.aborts = make(map[int64]context.CancelCauseFunc)
	}
	l.aborts[id] = c.abort
	enqueue := l.register()
	go func() {
		ctx := c.ctx
		if c.timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeoutCause(ctx, c.timeout, errFetchTimeout)
			defer cancel()
		}
		resp, err := f.Fetch(ctx, c.project, c.req)
		cause := context.Cause(ctx)
		enqueue(func() error {
			delete(l.aborts, id)
			return v.fetchEnded(r, c, resp, err, cause)
		})
	}()
	if c.signal != nil {
		abort := func(goja.FunctionCall) goja.Value {
			c.abort(errFetchAborted) // a no-op once the fetch has ended
			return goja.Undefined()
		}
		if _, err := v.fetchListen(goja.Undefined(), c.signal, v.rt.ToValue(abort)); err != nil {
			panic(err)
		}
	}
	return v.rt.ToValue(promise)
}

// fetchRequest reads host.fetch's request arguments (checked by fetch.js).
func (v *vm) fetchRequest(call goja.FunctionCall) FetchRequest {
	req := FetchRequest{Method: call.Argument(0).String(), URL: call.Argument(1).String(),
		Header: v.header(call.Argument(2), call.Argument(3)), Redirect: call.Argument(6).String()}
	switch b := call.Argument(4).Export().(type) {
	case string:
		req.Body = []byte(b)
	case goja.ArrayBuffer:
		req.Body = append([]byte(nil), b.Bytes()...)
	}
	return req
}

// fetchEnded settles a fetch on the run's loop: its log line, then its
// Promise; cause is why its context ended, if it did. A failure rejects it
// with the call's TypeError (a TimeoutError for its own timeout), or with
// the signal's reason when the signal aborted it.
func (v *vm) fetchEnded(r *run, c *fetchCall, resp *FetchResponse, err error, cause error) error {
	c.abort(nil)
	r.logFetch(c.req, resp, err, time.Since(c.start))
	if c.opCtx.Err() != nil {
		// The operation's limit ended the request: the limit's interrupt
		// ends the operation, not a catchable error.
		return r.interruptTop()
	}
	if err == nil {
		return v.fetched(r, c, resp)
	}
	switch {
	case errors.Is(cause, errFetchTimeout):
		err = fmt.Errorf("fetch to %s: no response within the %s timeout", hostOf(c.req.URL), c.timeout)
		_ = c.failure.Set("name", "TimeoutError")
	case errors.Is(cause, errFetchAborted) && c.signal != nil:
		return c.reject(c.signal.Get("reason"))
	}
	_ = c.failure.Set("message", err.Error())
	return c.reject(c.failure)
}

// fetched resolves a fetch with its Response, built by fetch.js's
// received(status, statusText, names, values, url, redirected, body): the
// header names lower-case and each one's values joined with ", " (as
// Headers.get gives them).
func (v *vm) fetched(r *run, c *fetchCall, resp *FetchResponse) error {
	r.allocated.Add(uint64(len(resp.Body)))
	names := make([]any, 0, len(resp.Header))
	values := make([]any, 0, len(resp.Header))
	for k, vals := range resp.Header {
		names = append(names, strings.ToLower(k))
		values = append(values, strings.Join(vals, ", "))
	}
	rt := v.rt
	obj, err := v.fetchReceived(goja.Undefined(), rt.ToValue(resp.Status), rt.ToValue(resp.StatusText),
		rt.NewArray(names...), rt.NewArray(values...), rt.ToValue(resp.URL), rt.ToValue(resp.Redirected),
		rt.ToValue(rt.NewArrayBuffer(resp.Body)))
	if err != nil {
		return err
	}
	return c.resolve(obj)
}

// header reads parallel arrays of header names and values (checked by
// fetch.js).
func (v *vm) header(names, values goja.Value) http.Header {
	n, _ := names.(*goja.Object)
	vals, _ := values.(*goja.Object)
	if n == nil || vals == nil {
		return http.Header{}
	}
	count := int(n.Get("length").ToInteger())
	h := make(http.Header, count)
	for i := range count {
		k := strconv.Itoa(i)
		h.Add(n.Get(k).String(), vals.Get(k).String())
	}
	return h
}

// jsParseBody is host.json(arrayBuffer): JSON.parse(host.decode(b)) with
// one string made from the bytes, not two values.
func (v *vm) jsParseBody(call goja.FunctionCall) goja.Value {
	ab, _ := call.Argument(0).Export().(goja.ArrayBuffer)
	b := ab.Bytes()
	var s string
	if utf8.Valid(b) {
		s = string(b)
	} else {
		s = string([]rune(string(b)))
	}
	p := jsonParser{v: v, rt: v.rt, s: s}
	if val, ok := p.parse(); ok {
		return val
	}
	ret, err := v.parse(goja.Undefined(), v.rt.ToValue(s))
	if err != nil {
		panic(err) // *goja.Exception: rethrown as the original SyntaxError
	}
	return ret
}

// jsDecodeUTF8 is host.decode(arrayBuffer): the bytes as a string, invalid
// UTF-8 replaced by U+FFFD as TextDecoder does.
func (v *vm) jsDecodeUTF8(call goja.FunctionCall) goja.Value {
	ab, _ := call.Argument(0).Export().(goja.ArrayBuffer)
	b := ab.Bytes()
	if utf8.Valid(b) {
		return v.rt.ToValue(string(b))
	}
	return v.rt.ToValue(string([]rune(string(b))))
}

// jsEncodeUTF8 is host.encode(string): its UTF-8 bytes as an ArrayBuffer.
func (v *vm) jsEncodeUTF8(call goja.FunctionCall) goja.Value {
	return v.rt.ToValue(v.rt.NewArrayBuffer([]byte(call.Argument(0).String())))
}

// logFetch writes the run's log line for a fetch: method, host, status and
// duration; never the URL's path or query, headers or bodies.
func (r *run) logFetch(req FetchRequest, resp *FetchResponse, err error, took time.Duration) {
	host := hostOf(req.URL)
	ms := store.Millis(took)
	if err != nil {
		r.log("warn", fmt.Sprintf("fetch %s %s failed after %.1f ms", req.Method, host, ms))
		return
	}
	r.log("info", fmt.Sprintf("fetch %s %s: %d in %.1f ms", req.Method, host, resp.Status, ms))
}

// hostOf is the host:port of a URL, or "(invalid URL)".
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	return u.Host
}
