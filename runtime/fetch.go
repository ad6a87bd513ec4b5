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
	_ = host.Set("headers", v.jsResponseHeaders)
	_ = host.Set("json", v.jsParseBody)
	_ = host.Set("decode", v.jsDecodeUTF8)
	_ = host.Set("encode", v.jsEncodeUTF8)
	ret, err := install(goja.Undefined(), host)
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	if err := v.fetchJS.read(ret); err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	v.fetchJS.basic = v.rt.ToValue("basic")
	return nil
}

// fetchJS is what js/fetch.js gives host.fetch to build a Response.
type fetchJS struct {
	responseProto, headersProto *goja.Object
	bodyOf                      *goja.Symbol
	// fill(headers, pairs) gives a Headers its Map; listen(signal, fn)
	// adds an abort listener to a signal.
	fill, listen goja.Callable
	basic        goja.Value // "basic", a Response's type
}

// read takes the helpers from what js/fetch.js returned.
func (js *fetchJS) read(ret goja.Value) error {
	obj, _ := ret.(*goja.Object)
	if obj == nil {
		return errors.New("js/fetch.js returned no helpers")
	}
	var ok [5]bool
	js.responseProto, ok[0] = obj.Get("Response").(*goja.Object)
	js.headersProto, ok[1] = obj.Get("Headers").(*goja.Object)
	js.bodyOf, ok[2] = obj.Get("bodyOf").(*goja.Symbol)
	js.fill, ok[3] = goja.AssertFunction(obj.Get("fill"))
	js.listen, ok[4] = goja.AssertFunction(obj.Get("listen"))
	if ok != [5]bool{true, true, true, true, true} {
		return errors.New("js/fetch.js returned incomplete helpers")
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
		if _, err := v.fetchJS.listen(goja.Undefined(), c.signal, v.rt.ToValue(abort)); err != nil {
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

// fetched resolves a fetch with its Response, built as js/fetch.js's
// Response objects are: own data properties in this order, its body under
// a symbol, its headers read from Go on first use (responseHeaders).
func (v *vm) fetched(r *run, c *fetchCall, resp *FetchResponse) error {
	r.allocated.Add(uint64(len(resp.Body)))
	h, err := v.responseHeaders(resp.Header)
	if err != nil {
		return err
	}
	rt := v.rt
	o := rt.CreateObject(v.fetchJS.responseProto)
	for _, err := range [...]error{
		o.Set("status", resp.Status),
		o.Set("statusText", resp.StatusText),
		o.Set("headers", h),
		o.Set("url", resp.URL),
		o.Set("redirected", resp.Redirected),
		o.Set("type", v.fetchJS.basic),
		o.SetSymbol(v.fetchJS.bodyOf, rt.NewArrayBuffer(resp.Body)),
		o.Set("bodyUsed", false),
	} {
		if err != nil {
			return fmt.Errorf("fetch: build the response: %w", err)
		}
	}
	return c.resolve(o)
}

// maxLazyHeaders bounds the fetch responses of a run whose headers wait
// in Go (vm.lazyHeaders) until the script reads them; past it, a
// response's headers are given to its Headers at once.
const maxLazyHeaders = 1024

// responseHeaders makes the Headers of a fetch's response. Its Map is
// made on first use from what host.headers gives (jsResponseHeaders), or
// at once when maxLazyHeaders responses of the run wait already.
func (v *vm) responseHeaders(hdr http.Header) (*goja.Object, error) {
	h := v.rt.CreateObject(v.fetchJS.headersProto)
	if len(hdr) == 0 {
		return h, nil // host.headers gives none
	}
	if len(v.lazyHeaders) < maxLazyHeaders {
		if v.lazyHeaders == nil {
			v.lazyHeaders = make(map[*goja.Object]http.Header)
		}
		v.lazyHeaders[h] = hdr
		return h, nil
	}
	if _, err := v.fetchJS.fill(goja.Undefined(), h, v.headerPairs(hdr)); err != nil {
		return nil, err
	}
	return h, nil
}

// jsResponseHeaders is host.headers(h): the headers of a fetch response's
// Headers h as [name, value, ...] (see headerPairs); none for any other
// object. They stay until the run ends (run.release).
func (v *vm) jsResponseHeaders(call goja.FunctionCall) goja.Value {
	h, _ := call.Argument(0).(*goja.Object)
	return v.headerPairs(v.lazyHeaders[h])
}

// headerPairs is hdr as a JS array [name, value, ...]: the names
// lower-case and each one's values joined with ", " (as Headers.get gives
// them).
func (v *vm) headerPairs(hdr http.Header) goja.Value {
	pairs := make([]any, 0, 2*len(hdr))
	for k, vals := range hdr {
		pairs = append(pairs, strings.ToLower(k), strings.Join(vals, ", "))
	}
	return v.rt.NewArray(pairs...)
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
// The line is appended by hand: fmt.Sprintf boxed its arguments, an
// allocation each.
func (r *run) logFetch(req FetchRequest, resp *FetchResponse, err error, took time.Duration) {
	var buf [128]byte
	b := append(buf[:0], "fetch "...)
	b = append(b, req.Method...)
	b = append(b, ' ')
	b = append(b, hostOf(req.URL)...)
	level := "info"
	if err != nil {
		level = "warn"
		b = append(b, " failed after "...)
	} else {
		b = append(b, ": "...)
		b = strconv.AppendInt(b, int64(resp.Status), 10)
		b = append(b, " in "...)
	}
	b = strconv.AppendFloat(b, store.Millis(took), 'f', 1, 64) // as %.1f
	b = append(b, " ms"...)
	r.log(level, string(b))
}

// hostOf is the host:port of a URL, or "(invalid URL)".
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	return u.Host
}
