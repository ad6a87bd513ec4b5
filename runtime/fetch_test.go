package runtime

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// plainFetcher is a Fetcher with net/http and no policy: the runtime's
// side of fetch is tested here, the egress policy in package egress.
type plainFetcher struct{}

func (plainFetcher) Fetch(ctx context.Context, _ *scripts.Project, req FetchRequest) (*FetchResponse, error) {
	hr, err := http.NewRequestWithContext(ctx, req.Method, req.URL, strings.NewReader(string(req.Body)))
	if err != nil {
		return nil, err
	}
	hr.Header = req.Header
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("fetch to %s: %w", hr.URL.Host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("fetch to %s: %w", hr.URL.Host, err)
	}
	return &FetchResponse{Status: resp.StatusCode, StatusText: http.StatusText(resp.StatusCode), Header: resp.Header,
		URL: resp.Request.URL.String(), Redirected: resp.Request.URL.String() != req.URL, Body: body}, nil
}

func upstream(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestFetchSendsTheRequestAndReadsTheResponse(t *testing.T) {
	url := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Seen", r.Method+" "+r.Header.Get("X-Token")+" "+r.Header.Get("Content-Type"))
		fmt.Fprintf(w, `{"echo": %q, "price": 42}`, body)
	})
	e := newEngine(t, Config{Fetcher: plainFetcher{}})
	res := runOne(t, e, `async function handle(event) {
		const resp = await fetch(event.url + "/orders?x=1", {
			method: "post",
			headers: {"X-Token": "t1"},
			body: JSON.stringify({id: 7}),
		});
		const data = await resp.json();
		const names = [];
		for (const [k] of resp.headers) names.push(k);
		return {status: resp.status, ok: resp.ok, seen: resp.headers.get("x-seen"), echo: data.echo,
			price: data.price, hasType: names.includes("content-type"), url: resp.url.startsWith(event.url)};
	}`, map[string]any{"url": url})
	if res.Err != nil {
		t.Fatalf("run failed: %v", res.Err)
	}
	want := map[string]any{"status": 200.0, "ok": true, "seen": "POST t1 text/plain;charset=UTF-8",
		"echo": `{"id":7}`, "price": 42.0, "hasType": true, "url": true}
	if !equalJSON(res.value(), want) {
		t.Fatalf("result %v, want %v", res.value(), want)
	}
	if !hasLog(res, "fetch POST "+strings.TrimPrefix(url, "http://")+": 200 in") {
		t.Fatalf("logs %v lack the fetch line", res.Logs)
	}
	for _, l := range res.Logs {
		if strings.Contains(l.Message, "orders") || strings.Contains(l.Message, "t1") {
			t.Fatalf("the fetch log line shows the path or a header: %q", l.Message)
		}
	}
}

func TestFetchBodiesOfEveryKind(t *testing.T) {
	url := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d:%s", len(body), body)
	})
	e := newEngine(t, Config{Fetcher: plainFetcher{}})
	res := runOne(t, e, `async function handle(event) {
		const out = [];
		const bytes = new Uint8Array([104, 105, 33]);
		for (const body of ["héllo", bytes, bytes.buffer, new DataView(bytes.buffer, 1, 2)]) {
			const r = await fetch(event.url, {method: "PUT", body});
			out.push(await r.text());
		}
		const r = await fetch(event.url, {method: "POST", body: "abc"});
		const buf = await r.arrayBuffer();
		out.push(buf.byteLength);
		try { await fetch(event.url, {method: "POST", body: {a: 1}}); } catch (e) { out.push(e.name + ": " + e.message); }
		return out;
	}`, map[string]any{"url": url})
	if res.Err != nil {
		t.Fatalf("run failed: %v", res.Err)
	}
	want := []any{"6:héllo", "3:hi!", "3:hi!", "2:i!", 5.0,
		"TypeError: fetch body must be a string, an ArrayBuffer or a typed array; for an object use JSON.stringify(value)"}
	if !equalJSON(res.value(), want) {
		t.Fatalf("result %v, want %v", res.value(), want)
	}
}

func TestFetchTimeoutAndAbortAreCatchable(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	url := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	e := newEngine(t, Config{Fetcher: plainFetcher{}})
	res := runOne(t, e, `async function handle(event) {
		const out = [];
		try { await fetch(event.url, {timeout: 30}); } catch (e) { out.push(e.name); }
		try { await fetch(event.url, {signal: AbortSignal.timeout(30)}); } catch (e) { out.push(e.name); }
		const c = new AbortController();
		const p = fetch(event.url, {signal: c.signal});
		setTimeout(() => c.abort(), 10);
		try { await p; } catch (e) { out.push(e.name); }
		try { await fetch(event.url, {signal: AbortSignal.abort(new Error("early"))}); } catch (e) { out.push(e.message); }
		return out;
	}`, map[string]any{"url": url})
	if res.Err != nil {
		t.Fatalf("run failed: %v", res.Err)
	}
	if want := []any{"TimeoutError", "TimeoutError", "AbortError", "early"}; !equalJSON(res.value(), want) {
		t.Fatalf("result %v, want %v", res.value(), want)
	}
}

func TestTheOperationTimeoutEndsAPendingFetch(t *testing.T) {
	ended := make(chan struct{})
	url := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // the agent closed the connection
		close(ended)
	})
	e := newEngine(t, Config{Fetcher: plainFetcher{}})
	p := newProject(t, "p", op{name: "main", timeout: 100 * time.Millisecond, src: `async function handle(event) { await fetch(event.url); return 1; }`})
	res := e.Run(context.Background(), Invocation{Project: p, Operation: "main", Trigger: TriggerWebhook, Event: map[string]any{"url": url}})
	if res.Status != store.StatusTimedOut {
		t.Fatalf("status %s, err %v; want timed_out", res.Status, res.Err)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream request was not cancelled when the run timed out")
	}
}

func TestFetchFailuresAreTypeErrorsNamingTheHost(t *testing.T) {
	e := newEngine(t, Config{Fetcher: plainFetcher{}})
	res := runOne(t, e, `async function handle() {
		try { await fetch("http://127.0.0.1:1/x"); } catch (e) { return e.name + ": " + e.message; }
	}`, nil)
	got, _ := res.value().(string)
	if res.Err != nil || !strings.HasPrefix(got, "TypeError: fetch to 127.0.0.1:1") {
		t.Fatalf("result %q, err %v", got, res.Err)
	}
}

func TestFetchWithoutAFetcherSaysSo(t *testing.T) {
	e := newEngine(t, Config{})
	res := runOne(t, e, `async function handle() { await fetch("http://example.com"); }`, nil)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "fetch is not available on this agent") {
		t.Fatalf("err %v", res.Err)
	}
}

func TestResponseAndHeadersAsScriptsBuildThem(t *testing.T) {
	e := newEngine(t, Config{})
	res := runOne(t, e, `async function handle() {
		const h = new Headers([["A", "1"]]);
		h.append("a", "2");
		h.set("B", "x");
		const r = Response.json({n: 1}, {status: 201, headers: h});
		return {a: h.get("a"), b: h.get("b"), none: h.get("c"), ok: r.ok, status: r.status, body: await r.json(),
			type: r.headers.get("content-type"), keys: [...h.keys()]};
	}`, nil)
	want := map[string]any{"a": "1, 2", "b": "x", "none": nil, "ok": true, "status": 201.0, "body": map[string]any{"n": 1.0},
		"type": "application/json", "keys": []any{"a", "b"}}
	if res.Err != nil || !equalJSON(res.value(), want) {
		t.Fatalf("result %v, err %v; want %v", res.value(), res.Err, want)
	}
}

func TestAnUnhandledFetchFailureIsLocatedAtTheFetchCall(t *testing.T) {
	e := newEngine(t, Config{Fetcher: plainFetcher{}})
	res := runOne(t, e, `async function handle() {
	const p = fetch("http://127.0.0.1:1/x");
	await sleep(200);
	return 1;
}`, nil)
	se := scriptErr(t, res.Err)
	if se.Line != 2 || !strings.Contains(se.Message, "TypeError: fetch to 127.0.0.1:1") {
		t.Fatalf("error %q at %s:%d:%d, want the fetch call's line 2", se.Message, se.File, se.Line, se.Column)
	}
}

func TestAnAbortWinsOverATimeoutNotYetReached(t *testing.T) {
	url := upstream(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	e := newEngine(t, Config{Fetcher: plainFetcher{}})
	res := runOne(t, e, `async function handle(event) {
		const c = new AbortController();
		const p = fetch(event.url, {signal: c.signal, timeout: 10000});
		setTimeout(() => c.abort(), 10);
		try { await p; } catch (e) { return e.name; }
	}`, map[string]any{"url": url})
	if res.Err != nil || res.value() != "AbortError" {
		t.Fatalf("result %v, err %v; want AbortError", res.value(), res.Err)
	}
}

func TestAFetchedResponsesShapeAndHeaders(t *testing.T) {
	f := cannedFetcher{FetchResponse{Status: 201, StatusText: "Created", URL: "http://upstream.test/a",
		Header: http.Header{"Content-Type": {"application/json"}, "X-Multi": {"a", "b"}}, Body: []byte(`{"n": 1}`)}}
	e := newEngine(t, Config{Fetcher: f})
	res := runOne(t, e, `async function handle() {
		const r = await fetch("http://upstream.test/a");
		const out = {keys: Object.keys(r), json: JSON.parse(JSON.stringify(r)), ok: r.ok, type: r.headers.get("Content-Type"),
			list: [...r.headers], body: await r.json()};
		const f = await fetch("http://upstream.test/a");
		Object.freeze(f.headers);
		f.headers.append("x-added", "1");
		out.frozen = [f.headers.get("x-multi"), f.headers.has("date"), [...f.headers.keys()]];
		out.copy = new Headers(f.headers).get("x-multi");
		return out;
	}`, nil)
	want := map[string]any{
		"keys": []any{"status", "statusText", "headers", "url", "redirected", "type", "bodyUsed"},
		"json": map[string]any{"status": 201.0, "statusText": "Created", "headers": map[string]any{}, "url": "http://upstream.test/a",
			"redirected": false, "type": "basic", "bodyUsed": false},
		"ok": true, "type": "application/json", "list": []any{[]any{"content-type", "application/json"}, []any{"x-multi", "a, b"}},
		"body": map[string]any{"n": 1.0}, "frozen": []any{"a, b", false, []any{"content-type", "x-added", "x-multi"}}, "copy": "a, b",
	}
	if res.Err != nil || !equalJSON(res.value(), want) {
		t.Fatalf("result %v, err %v; want %v", res.value(), res.Err, want)
	}
}

func TestManyResponsesHeadersAreAllRead(t *testing.T) {
	f := cannedFetcher{FetchResponse{Status: 200, Header: http.Header{"X-N": {"1"}}}}
	e := newEngine(t, Config{Fetcher: f})
	// More responses than wait in Go (maxLazyHeaders): the later ones
	// have their headers at once.
	res := runOne(t, e, `async function handle() {
		const all = [];
		for (let i = 0; i < 1100; i++) all.push(await fetch("http://upstream.test/"));
		return all.filter(r => r.headers.get("x-n") === "1").length;
	}`, nil)
	if res.Err != nil || res.value() != 1100.0 {
		t.Fatalf("result %v, err %v; want all 1100 responses with their header", res.value(), res.Err)
	}
}

func TestFetchLogLines(t *testing.T) {
	req := FetchRequest{Method: "POST", URL: "https://api.example.com:8443/orders?key=secret"}
	for _, c := range []struct {
		resp  *FetchResponse
		err   error
		took  time.Duration
		level string
		want  string
	}{
		{&FetchResponse{Status: 200}, nil, 20*time.Millisecond + 449*time.Microsecond, "info", "fetch POST api.example.com:8443: 200 in 20.4 ms"},
		{&FetchResponse{Status: 503}, nil, 1250 * time.Microsecond, "info", "fetch POST api.example.com:8443: 503 in 1.2 ms"},
		{nil, fmt.Errorf("refused"), 3 * time.Second, "warn", "fetch POST api.example.com:8443 failed after 3000.0 ms"},
	} {
		r := &run{}
		r.logFetch(req, c.resp, c.err, c.took)
		if len(r.logs) != 1 || r.logs[0].Level != c.level || r.logs[0].Message != c.want {
			t.Errorf("logged %+v, want one %s line %q", r.logs, c.level, c.want)
		}
	}
	r := &run{}
	r.logFetch(FetchRequest{Method: "GET", URL: "::"}, nil, fmt.Errorf("invalid"), 0)
	if want := "fetch GET (invalid URL) failed after 0.0 ms"; len(r.logs) != 1 || r.logs[0].Message != want {
		t.Errorf("logged %+v, want %q", r.logs, want)
	}
}
