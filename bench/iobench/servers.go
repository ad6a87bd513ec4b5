package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opsrunner/opsrunner/internal/subproc"
	"github.com/opsrunner/opsrunner/internal/testenv"
	"github.com/opsrunner/opsrunner/scripts"
)

const (
	// upstreamDelay is how long the upstream takes to answer.
	upstreamDelay = 20 * time.Millisecond
	// orderPath is the upstream's one resource.
	orderPath = "/order"
	// wantPrice is order.price in the upstream's answer, what every server
	// under test returns as {"price": wantPrice}.
	wantPrice = 42.5
)

// upstream is the service every server under test calls: it answers
// GET /order after upstreamDelay with about 1 KiB of JSON. It counts the
// calls, so that a leg can be checked to have made one per request.
type upstream struct {
	url   string
	calls atomic.Int64
}

// startUpstream serves the upstream on a free loopback port until ctx ends.
func startUpstream(ctx context.Context) (*upstream, error) {
	body, err := json.Marshal(map[string]any{
		"order":   map[string]any{"id": 7, "price": wantPrice, "currency": "EUR"},
		"padding": strings.Repeat("x", 960),
	})
	if err != nil {
		return nil, err
	}
	u := &upstream{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+orderPath, func(w http.ResponseWriter, r *http.Request) {
		u.calls.Add(1)
		select {
		case <-time.After(upstreamDelay):
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	context.AfterFunc(ctx, func() { srv.Close() })
	u.url = "http://" + ln.Addr().String()
	return u, nil
}

// serveGo is the Go baseline, run as a child process of the benchmark (the
// -serve-go flag): a bare net/http handler that GETs the upstream with a
// shared keep-alive client (the same pool bounds as the agent's egress
// client), decodes its JSON into a struct and answers {"price": …}. It
// serves on addr until the process is stopped.
func serveGo(addr, upstreamURL string) error {
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}}
	h := func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, upstreamURL+orderPath, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, "fetch: "+err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		var d struct {
			Order struct {
				Price float64 `json:"price"`
			} `json:"order"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || resp.StatusCode != http.StatusOK {
			http.Error(w, fmt.Sprintf("upstream answered %s: %v", resp.Status, err), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]float64{"price": d.Order.Price})
	}
	return http.ListenAndServe(addr, http.HandlerFunc(h))
}

// nodeServer is the Node.js baseline: one process (single-threaded), the
// http module and the built-in fetch with its global dispatcher as it comes
// (undici's defaults: keep-alive, no cap on connections per origin).
const nodeServer = `'use strict';
const http = require('http');
const upstream = process.env.UPSTREAM;
http.createServer(async (req, res) => {
  try {
    const r = await fetch(upstream + '/order');
    const d = await r.json();
    res.writeHead(200, {'Content-Type': 'application/json'});
    res.end(JSON.stringify({price: d.order.price}));
  } catch (e) {
    res.writeHead(502, {'Content-Type': 'text/plain'});
    res.end('fetch: ' + e);
  }
}).listen(Number(process.env.PORT), '127.0.0.1');
`

// hookScript is the opsrunner leg's webhook: the Node.js server's work.
const hookScript = `async function handle(event) {
  const r = await fetch(env.UPSTREAM + "/order");
  const d = await r.json();
  return {price: d.order.price};
}
`

// manifest deploys hookScript as project iobench, webhook path hook,
// allowed to reach the loopback upstream at upstreamURL.
func manifest(upstreamURL string) string {
	return fmt.Sprintf("project: iobench\negress: [\"127.0.0.1\"]\nenv: {UPSTREAM: %q}\n"+
		"operations:\n  - name: hook\n    script: hook.js\n    webhook: {path: hook}\n", upstreamURL)
}

// child is a server under test running as a process of its own, so that
// its CPU time and memory are its alone.
type child struct {
	name   string
	url    string // where wrk sends its requests
	cmd    *exec.Cmd
	log    string        // the file holding its stdout and stderr
	exited chan struct{} // closed when the process has ended
}

// pid is the server's process id, whose /proc entries hold its CPU and RSS.
func (c *child) pid() int { return c.cmd.Process.Pid }

// startChild starts cmd with its output in a log file in dir and waits until
// it accepts connections on port; its requests go to path there.
func startChild(name, dir string, cmd *exec.Cmd, port int, path string) (*child, error) {
	logPath := filepath.Join(dir, strings.Map(func(r rune) rune {
		if r == ' ' || r == '(' || r == ')' {
			return '-'
		}
		return r
	}, name)+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	c := &child{name: name, url: fmt.Sprintf("http://127.0.0.1:%d%s", port, path), cmd: cmd, log: logPath, exited: make(chan struct{})}
	if err := subproc.Start(cmd, func(error) { close(c.exited) }); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if err := testenv.WaitTCP(fmt.Sprintf("127.0.0.1:%d", port), 30*time.Second); err != nil {
		c.stop()
		return nil, fmt.Errorf("start %s: %w\n%s", name, err, c.logTail())
	}
	return c, nil
}

// stop ends the process: SIGTERM, then SIGKILL after 10 s. It blocks until
// the process has ended; a second call returns at once.
func (c *child) stop() {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		return
	case <-time.After(10 * time.Second):
	}
	c.cmd.Process.Kill()
	<-c.exited
}

func (c *child) logTail() string { return tail(c.log) }

// tail is the end of a log file, for error messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// startGo runs this program again as the Go baseline (serveGo).
func startGo(dir, upstreamURL string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start go handler: %w", err)
	}
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-serve-go", "127.0.0.1:"+strconv.Itoa(port), "-upstream", upstreamURL)
	return startChild("go handler", dir, cmd, port, "/hook")
}

// startNode runs nodeServer with the node found on PATH.
func startNode(dir, node, upstreamURL string) (*child, error) {
	script := filepath.Join(dir, "server.js")
	if err := os.WriteFile(script, []byte(nodeServer), 0o644); err != nil {
		return nil, fmt.Errorf("start node: %w", err)
	}
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(node, script)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "UPSTREAM="+upstreamURL)
	return startChild("node http", dir, cmd, port, "/hook")
}

// startAgent runs `opsrunner serve` from binary with run durability mode
// (sync or batched) and deploys the project calling upstreamURL; its leg
// is named prefix (mode).
func startAgent(dir, binary, prefix, mode, upstreamURL string) (*child, error) {
	name := prefix + " (" + mode + ")"
	dataDir := filepath.Join(dir, strings.ReplaceAll(prefix, " ", "-")+"-"+mode)
	httpPort, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	brokerPort, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, "serve")
	cmd.Env = append(os.Environ(),
		"OPSRUNNER_HTTP_ADDR=127.0.0.1:"+strconv.Itoa(httpPort),
		"OPSRUNNER_EMBEDDED_BROKER_ADDR=127.0.0.1:"+strconv.Itoa(brokerPort),
		"OPSRUNNER_DATA_DIR="+dataDir,
		"OPSRUNNER_AGENT_ID=iobench-"+strings.ReplaceAll(prefix, " ", "-")+"-"+mode,
		"OPSRUNNER_RUN_DURABILITY="+mode,
	)
	c, err := startChild(name, dir, cmd, httpPort, "/hooks/iobench/hook")
	if err != nil {
		return nil, err
	}
	if err := deploy(fmt.Sprintf("http://127.0.0.1:%d", httpPort), upstreamURL); err != nil {
		c.stop()
		return nil, fmt.Errorf("%s: %w\n%s", name, err, c.logTail())
	}
	return c, nil
}

// deploy puts the project on the agent at base.
func deploy(base, upstreamURL string) error {
	files := map[string][]byte{
		"opsrunner.yaml": []byte(manifest(upstreamURL)),
		"hook.js":        []byte(hookScript),
	}
	var buf bytes.Buffer
	if err := scripts.WriteBundle(&buf, files); err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	req, err := http.NewRequest(http.MethodPut, base+"/api/v1/projects/iobench", &buf)
	if err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	req.Header.Set("Content-Type", "application/gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		var msg bytes.Buffer
		msg.ReadFrom(resp.Body)
		return fmt.Errorf("deploy: %s: %s", resp.Status, msg.String())
	}
	return nil
}

// checkAnswer makes one request to url as wrk will and fails unless it is answered 200
// with {"price": wantPrice}: a server that cannot reach the upstream (a
// misconfigured egress, say) may well answer 200 with an error in the body.
func checkAnswer(url string) error {
	resp, err := http.Post(url, "application/json", strings.NewReader(requestBody))
	if err != nil {
		return fmt.Errorf("check %s: %w", url, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	var got struct {
		Price *float64 `json:"price"`
	}
	err = json.Unmarshal(buf.Bytes(), &got)
	if resp.StatusCode != http.StatusOK || err != nil || got.Price == nil || *got.Price != wantPrice {
		return fmt.Errorf("check %s: want 200 {\"price\": %v}, got %s %s", url, wantPrice, resp.Status, buf.String())
	}
	return nil
}
