package agent_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/opsrunner/opsrunner/agent"
)

const helloManifest = "project: greet\noperations:\n  - name: hi\n    script: hi.js\n    webhook: {path: hi}\n"

func helloFiles(greeting string) map[string]string {
	return map[string]string{
		"opsrunner.yaml": helloManifest,
		"hi.js":          "function handle(event) {\n  return {greeting: '" + greeting + "'};\n}\n",
	}
}

// rawTar builds a gzipped tar with arbitrary headers (for hostile bundles).
func rawTar(t *testing.T, entries ...tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, h := range entries {
		body := []byte("x")
		if h.Typeflag == tar.TypeReg || h.Typeflag == 0 {
			h.Size = int64(len(body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write(body)
		}
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func TestDeployRejectsBadBundlesAndKeepsServing(t *testing.T) {
	ta := startAgent(t, func(c *agent.Config) { c.MaxBundleBytes = 64 << 10 })
	ta.mustDeploy(t, "greet", bundle(t, helloFiles("v1")))

	withManifest := func(m string, extra map[string]string) []byte {
		files := map[string]string{"opsrunner.yaml": m, "hi.js": "function handle() { return 1; }\n"}
		for k, v := range extra {
			files[k] = v
		}
		return bundle(t, files)
	}
	cases := []struct {
		name        string
		contentType string
		body        []byte
		status      int
		want        []string // substrings of the answer
	}{
		{"malformed tar", "application/gzip", []byte("this is not gzip"), 400, []string{"gzip"}},
		{"missing manifest", "application/gzip", bundle(t, map[string]string{"hi.js": "1"}), 400, []string{"opsrunner.yaml"}},
		{"unknown manifest key", "application/gzip", withManifest(helloManifest+"colour: blue\n", nil), 400, []string{"opsrunner.yaml", `"line":6`, "colour"}},
		{"path traversal", "application/gzip", rawTar(t, tar.Header{Name: "../evil.js", Typeflag: tar.TypeReg}), 400, []string{"evil.js"}},
		{"absolute path", "application/gzip", rawTar(t, tar.Header{Name: "/etc/evil", Typeflag: tar.TypeReg}), 400, []string{"evil"}},
		{"symlink", "application/gzip", rawTar(t, tar.Header{Name: "link.js", Linkname: "/etc/passwd", Typeflag: tar.TypeSymlink}), 400, []string{"link.js"}},
		{"script syntax error", "application/gzip", bundle(t, map[string]string{"opsrunner.yaml": helloManifest, "hi.js": "function handle() {\n  return 1;\n  let = = 2;\n}\n"}), 400, []string{"hi.js", `"line":3`}},
		{"chain names a missing operation", "application/gzip", withManifest("project: greet\noperations:\n  - name: hi\n    script: hi.js\n    onSuccess: [ghost]\n", nil), 400, []string{"ghost"}},
		{"bad duration", "application/gzip", withManifest("project: greet\noperations:\n  - name: hi\n    script: hi.js\n    timeout: soon\n", nil), 400, []string{"timeout"}},
		{"missing script", "application/gzip", bundle(t, map[string]string{"opsrunner.yaml": helloManifest}), 400, []string{"hi.js"}},
		{"wrong content type", "text/plain", []byte("hello"), 415, []string{"unsupported_media_type"}},
		{"oversized bundle", "application/gzip", bundle(t, map[string]string{"opsrunner.yaml": helloManifest, "hi.js": "1", "big.bin": randomText(100 << 10)}), 413, []string{"payload_too_large"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := ta.do(t, http.MethodPut, "/api/v1/projects/greet", tc.contentType, tc.body, nil)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			r.errorCode(t)
			for _, w := range tc.want {
				if !strings.Contains(string(r.Body), w) {
					t.Errorf("answer lacks %q: %s", w, r.Body)
				}
			}
			// The live version keeps serving.
			if got := ta.do(t, "POST", "/hooks/greet/hi", "", nil, nil); got.Status != 200 || got.json(t)["greeting"] != "v1" {
				t.Fatalf("live version broken after bad deploy: %d %s", got.Status, got.Body)
			}
		})
	}
}

func TestVersionsRollbackAndScriptUpload(t *testing.T) {
	dir := t.TempDir()
	ta := startAgent(t, func(c *agent.Config) { c.DataDir = dir })
	greeting := func() string {
		t.Helper()
		r := ta.do(t, "POST", "/hooks/greet/hi", "", nil, nil)
		if r.Status != 200 {
			t.Fatalf("invoke: %d %s", r.Status, r.Body)
		}
		return r.json(t)["greeting"].(string)
	}
	ta.mustDeploy(t, "greet", bundle(t, helloFiles("v1")))
	ta.mustDeploy(t, "greet", bundle(t, helloFiles("v2")))
	if g := greeting(); g != "v2" {
		t.Fatalf("after second deploy: %q", g)
	}
	p := ta.do(t, "GET", "/api/v1/projects/greet", "", nil, nil).json(t)
	if len(p["versions"].([]any)) != 2 || p["activeVersion"] != float64(2) {
		t.Fatalf("project: %v", p)
	}
	if r := ta.do(t, "POST", "/api/v1/projects/greet/rollback", "application/json", []byte(`{"version":1}`), nil); r.Status != 200 {
		t.Fatalf("rollback: %d %s", r.Status, r.Body)
	}
	if g := greeting(); g != "v1" {
		t.Fatalf("after rollback: %q", g)
	}
	if r := ta.do(t, "POST", "/api/v1/projects/greet/rollback", "application/json", []byte(`{"version":9}`), nil); r.Status != 404 {
		t.Fatalf("rollback to a missing version: %d %s", r.Status, r.Body)
	}
	r := ta.do(t, "PUT", "/api/v1/projects/greet/operations/hi", "application/javascript", []byte("function handle() { return {greeting: 'v3'}; }\n"), nil)
	if r.Status != 201 {
		t.Fatalf("script upload: %d %s", r.Status, r.Body)
	}
	if g := greeting(); g != "v3" {
		t.Fatalf("after script upload: %q", g)
	}
	r = ta.do(t, "PUT", "/api/v1/projects/greet/operations/hi", "application/javascript", []byte("function handle( {\n"), nil)
	if r.Status != 400 || !strings.Contains(string(r.Body), "hi.js") {
		t.Fatalf("bad script upload: %d %s", r.Status, r.Body)
	}
	if g := greeting(); g != "v3" {
		t.Fatalf("bad upload changed the live version: %q", g)
	}
}

func TestProjectsAndRunsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := func(c *agent.Config) { c.DataDir = dir }
	first := startAgent(t, cfg)
	first.mustDeploy(t, "greet", bundle(t, helloFiles("kept")))
	if r := first.do(t, "POST", "/hooks/greet/hi", "", nil, nil); r.Status != 200 {
		t.Fatalf("invoke: %d %s", r.Status, r.Body)
	}
	stopAgent(t, first)

	second := startAgent(t, cfg)
	r := second.do(t, "POST", "/hooks/greet/hi", "", nil, nil)
	if r.Status != 200 || r.json(t)["greeting"] != "kept" {
		t.Fatalf("after restart: %d %s", r.Status, r.Body)
	}
	runs := second.do(t, "GET", "/api/v1/runs?operation=hi", "", nil, nil).json(t)["runs"].([]any)
	if len(runs) < 1 {
		t.Fatalf("runs lost on restart")
	}
}

// stopAgent shuts an agent down now (its cleanup then finds it stopped).
func stopAgent(t *testing.T, ta *testAgent) {
	t.Helper()
	ta.stop()
}

// randomText is n bytes that do not compress.
func randomText(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('!' + rand.IntN(90))
	}
	return string(b)
}

func TestDeployMultipart(t *testing.T) {
	ta := startAgent(t, nil)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for name, body := range helloFiles("multipart") {
		w, err := mw.CreateFormFile("file", name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(body))
	}
	mw.Close()
	if r := ta.do(t, http.MethodPut, "/api/v1/projects/greet", mw.FormDataContentType(), buf.Bytes(), nil); r.Status != http.StatusCreated {
		t.Fatalf("multipart deploy: %d %s", r.Status, r.Body)
	}
	if r := ta.do(t, "POST", "/hooks/greet/hi", "", nil, nil); r.Status != 200 || r.json(t)["greeting"] != "multipart" {
		t.Fatalf("invoke: %d %s", r.Status, r.Body)
	}
}
