// Package samples holds runnable sample projects (one folder each); these
// tests prove every sample bundles and loads cleanly, and that the curl
// lines of their comments work as written against an agent.
package samples

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/internal/agenttest"
	"github.com/opsrunner/opsrunner/scripts"
)

func TestSamplesLoad(t *testing.T) {
	t.Parallel()
	want := map[string]struct{ ops, hooks, listeners, schedules []string }{
		"hello":     {ops: []string{"hello"}, hooks: []string{"hello"}},
		"heartbeat": {ops: []string{"Beat", "Daily Report"}, schedules: []string{"beat", "weekday-report"}},
		"orders":    {ops: []string{"Validate Order", "Price Order", "Record Order", "Report Failure"}, hooks: []string{"orders"}},
		"pricing":   {ops: []string{"Price Order"}, hooks: []string{"price"}},
		"jms-orders": {
			ops:       []string{"1. JMS Listen", "2. Business Logic", "3. JMS Acknowledge (Rollback)", "4. JMS Acknowledge (Commit)", "Customer Logic", "Send Order"},
			hooks:     []string{"send"},
			listeners: []string{"orders-in", "orders-v3"},
		},
		"jms-variation2": {
			ops:       []string{"1. JMS Listen", "2. Business Logic", "3. JMS Acknowledge (Rollback)", "4. JMS Acknowledge (Commit)", "Send Order"},
			hooks:     []string{"send"},
			listeners: []string{"orders-in"},
		},
	}
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		found++
		name := e.Name()
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			bundle, err := scripts.BundleDir(name)
			if err != nil {
				t.Fatal(err)
			}
			files, err := scripts.ReadBundle(bytes.NewReader(bundle), scripts.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			p, err := scripts.Load(name, 1, files, scripts.LoadOptions{})
			if err != nil {
				t.Fatalf("sample %s does not load: %v", name, err)
			}
			w, ok := want[name]
			if !ok {
				t.Fatalf("sample %s has no expectations in this test", name)
			}
			for _, o := range w.ops {
				if _, ok := p.Operation(o); !ok {
					t.Errorf("operation %q missing", o)
				}
			}
			for _, h := range w.hooks {
				if _, ok := p.WebhookOperation(h); !ok {
					t.Errorf("webhook %q missing", h)
				}
			}
			for _, l := range w.listeners {
				if _, ok := p.Listener(l); !ok {
					t.Errorf("listener %q missing", l)
				}
			}
			for _, s := range w.schedules {
				if _, ok := p.Schedule(s); !ok {
					t.Errorf("schedule %q missing", s)
				}
			}
		})
	}
	if found != len(want) {
		t.Errorf("found %d sample folders, want %d", found, len(want))
	}
}

// curlWant is what the answer to each sample's curl lines holds.
var curlWant = map[string]string{
	"hello":          `{"message":"hello, Ada"}`,
	"orders":         `"orderId":"A-1"`,
	"jms-orders":     `"queued":"/queue/orders`,
	"jms-variation2": `"queued":"/queue/orders.v2"`,
}

// TestCurlLinesWorkAsWritten deploys each sample that shows curl lines in
// its comments to an agent and sends each request as curl would: every
// answer must be a success holding what the sample answers to a body it
// understood (a JSON body sent without its Content-Type is text to a
// webhook, and the samples answer as if they got no order).
func TestCurlLinesWorkAsWritten(t *testing.T) {
	t.Parallel()
	base := startAgent(t)
	for name, want := range curlWant {
		t.Run(name, func(t *testing.T) {
			manifest, err := os.ReadFile(filepath.Join(name, scripts.ManifestFile))
			if err != nil {
				t.Fatal(err)
			}
			lines := curlLines(string(manifest))
			if len(lines) == 0 {
				t.Fatalf("%s/%s shows no curl line", name, scripts.ManifestFile)
			}
			deploy(t, base, name)
			for _, line := range lines {
				req := curlRequest(t, line, base)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatalf("%s: %v", line, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode >= 300 || !strings.Contains(string(body), want) {
					t.Errorf("%s\nanswered %d %s, want a success holding %s", line, resp.StatusCode, body, want)
				}
			}
		})
	}
}

// startAgent runs an agent with embedded defaults on free loopback ports
// until the test ends and returns its base URL.
func startAgent(t *testing.T) string {
	t.Helper()
	a, err := agent.New(agenttest.Config(t, "samples-test"), nil)
	if err != nil {
		t.Fatalf("new agent: %v", err)
	}
	agenttest.Serve(t, a)
	return "http://" + a.HTTPAddr()
}

// deploy uploads the sample folder name as `opsrunner deploy` does.
func deploy(t *testing.T, base, name string) {
	t.Helper()
	b, err := scripts.BundleDir(name)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPut, base+"/api/v1/projects/"+name, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("deploy %s: %d %s", name, resp.StatusCode, body)
	}
}

// curlLines returns the curl commands shown in the comments of a YAML
// file, each joined across its "\" continuations.
func curlLines(yaml string) []string {
	var out []string
	cur := ""
	for _, line := range strings.Split(yaml, "\n") {
		text, ok := strings.CutPrefix(strings.TrimSpace(line), "#")
		if !ok {
			cur = ""
			continue
		}
		text = strings.TrimSpace(text)
		if cur != "" {
			text = cur + " " + text
		} else if !strings.HasPrefix(text, "curl ") {
			continue
		}
		if c, more := strings.CutSuffix(text, "\\"); more {
			cur = strings.TrimSpace(c)
			continue
		}
		cur = ""
		out = append(out, text)
	}
	return out
}

// curlRequest turns a curl command line into the request curl would make,
// sent to base instead of localhost:8080. Only the options the samples
// use are known (-X, -H, -d); any other fails the test, so that a new
// curl line is checked or this parser taught.
func curlRequest(t *testing.T, line, base string) *http.Request {
	t.Helper()
	args := shellWords(t, line)
	method, target, body := "GET", "", ""
	header := http.Header{}
	for i := 1; i < len(args); i++ {
		switch a := args[i]; {
		case (a == "-X" || a == "-H" || a == "-d") && i+1 < len(args):
			i++
			switch a {
			case "-X":
				method = args[i]
			case "-H":
				k, v, _ := strings.Cut(args[i], ":")
				header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			case "-d":
				body = args[i]
				if method == "GET" {
					method = "POST"
				}
			}
		case strings.HasPrefix(a, "-"):
			t.Fatalf("%s: curl option %s is not known to this test", line, a)
		default:
			target = a
		}
	}
	target, ok := strings.CutPrefix(strings.TrimPrefix(target, "http://"), "localhost:8080")
	if !ok {
		t.Fatalf("%s: the URL is not on localhost:8080", line)
	}
	req, err := http.NewRequest(method, base+target, strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	req.Header = header
	if body != "" && header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // curl's default for -d
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return req.WithContext(ctx)
}

// shellWords splits a command line as a POSIX shell does for the quoting
// the samples use: single and double quotes, and backslash escapes.
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				t.Fatalf("%s: unterminated quote", line)
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			j := strings.IndexByte(line[i+1:], '"')
			if j < 0 {
				t.Fatalf("%s: unterminated quote", line)
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		t.Fatalf("empty command line %q", line)
	}
	return words
}
