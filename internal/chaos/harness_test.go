package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/opsrunner/opsrunner/internal/subproc"
	"github.com/opsrunner/opsrunner/internal/testenv"
	"github.com/opsrunner/opsrunner/scripts"
)

// agentProc is one `opsrunner serve` child process with a fixed id, HTTP
// port and data directory, so that a restart is the same agent. Its methods
// are safe for concurrent use.
type agentProc struct {
	id      string
	url     string // http://127.0.0.1:port
	env     []string
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
}

// newAgent prepares (does not start) an agent; t.Cleanup kills it.
func newAgent(t *testing.T, id string, env ...string) *agentProc {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), id)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	a := &agentProc{
		id:      id,
		url:     "http://" + addr,
		logPath: filepath.Join(logDir, strings.ReplaceAll(t.Name(), "/", "_")+"-"+id+".log"),
		env: append([]string{
			"OPSRUNNER_HTTP_ADDR=" + addr,
			"OPSRUNNER_DATA_DIR=" + dir,
			"OPSRUNNER_AGENT_ID=" + id,
		}, env...),
	}
	_ = os.MkdirAll(filepath.Dir(a.logPath), 0o755)
	t.Cleanup(a.kill9)
	return a
}

// start launches the process and blocks until /healthz answers (30 s).
func (a *agentProc) start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== start %s at %s\n", a.id, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(binary, "serve")
	cmd.Env = append(os.Environ(), a.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	done := make(chan struct{})
	if err := subproc.Start(cmd, func(error) { logf.Close(); close(done) }); err != nil {
		logf.Close()
		return fmt.Errorf("start agent %s: %w", a.id, err)
	}
	a.cmd, a.done = cmd, done
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := httpClient.Get(a.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-done:
			a.cmd = nil
			return fmt.Errorf("agent %s exited during start; see %s", a.id, a.logPath)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent %s did not answer /healthz: %w", a.id, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill9 sends SIGKILL to the agent's process group and waits for it to
// exit. Idempotent.
func (a *agentProc) kill9() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		return
	}
	_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
	<-a.done
	a.cmd = nil
}

func (a *agentProc) running() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cmd != nil
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// getJSON GETs url into v.
func getJSON(url string, v any) error {
	resp, err := httpClient.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return json.Unmarshal(body, v)
}

// deploy uploads files as project to the agent.
func deploy(a *agentProc, project string, files map[string][]byte) error {
	var buf bytes.Buffer
	if err := scripts.WriteBundle(&buf, files); err != nil {
		return err
	}
	req, _ := http.NewRequest(http.MethodPut, a.url+"/api/v1/projects/"+project, &buf)
	req.Header.Set("Content-Type", "application/gzip")
	resp, err := httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("deploy %s to %s: %w", project, a.id, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("deploy %s to %s: %s: %s", project, a.id, resp.Status, body)
	}
	return nil
}

// hasListener reports whether the agent runs a listener with that id
// (project/name) from its live registry.
func hasListener(a *agentProc, id string) bool {
	var ls []struct {
		ID string `json:"id"`
	}
	if err := getJSON(a.url+"/api/v1/listeners", &ls); err != nil {
		return false
	}
	for _, l := range ls {
		if l.ID == id {
			return true
		}
	}
	return false
}

// ensureDeployed makes sure every running agent has the project live:
// it deploys to those that lack the listener (a restarted agent after a
// Redis restart lost the stored project; before change notifications land,
// a deploy reaches only the agent it was sent to).
func ensureDeployed(agents []*agentProc, project, listenerID string, files map[string][]byte) error {
	for _, a := range agents {
		if !a.running() || hasListener(a, listenerID) {
			continue
		}
		if err := deploy(a, project, files); err != nil {
			return err
		}
	}
	return nil
}

// membersView is the Contract's members shape (the fields used here).
type membersView struct {
	Leader  string `json:"leader"`
	Members []struct {
		ID       string `json:"id"`
		InFlight int    `json:"inFlight"`
	} `json:"members"`
}

// runView is the Contract's run shape (the fields used here).
type runView struct {
	ID         string     `json:"id"`
	Operation  string     `json:"operation"`
	Listener   string     `json:"listener"`
	Agent      string     `json:"agent"`
	MessageID  string     `json:"messageId"`
	Status     string     `json:"status"`
	Outcome    string     `json:"outcome"`
	Attempt    int        `json:"attempt"`
	Error      string     `json:"error"`
	StartedAt  time.Time  `json:"startedAt"`
	FinishedAt *time.Time `json:"finishedAt"`
}

// allRuns pages through GET /api/v1/runs with the query q.
func allRuns(a *agentProc, q string) ([]runView, error) {
	var out []runView
	before := ""
	for {
		var page struct {
			Runs []runView `json:"runs"`
			Next string    `json:"next"`
		}
		u := a.url + "/api/v1/runs?limit=1000&" + q
		if before != "" {
			u += "&before=" + before
		}
		if err := getJSON(u, &page); err != nil {
			return out, err
		}
		out = append(out, page.Runs...)
		if page.Next == "" || len(page.Runs) == 0 {
			return out, nil
		}
		before = page.Next
	}
}

// send publishes persistent JSON messages {"id": id[, "poison": true]} to
// dest, each with the id also in the dedup header, at most rate per second
// (0: as fast as possible, every 500th and the last with a receipt; paced:
// every message with a receipt). It
// reconnects when the broker goes away and resends the message whose send
// failed (the dedup header makes a resent copy harmless).
func send(ctx context.Context, b *testenv.Broker, dest string, ids []string, poison map[string]bool, rate float64) error {
	start := time.Now()
	var conn *stomp.Conn
	defer func() {
		if conn != nil {
			_ = conn.Disconnect()
		}
	}()
	for i := 0; i < len(ids); {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if conn == nil {
			c, err := b.Dial(quiet)
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			conn = c
		}
		if rate > 0 {
			if ahead := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); ahead > 0 {
				time.Sleep(ahead)
			}
		}
		id := ids[i]
		body := `{"id":"` + id + `"}`
		if poison[id] {
			body = `{"id":"` + id + `","poison":true}`
		}
		opts := []func(*frame.Frame) error{stomp.SendOpt.Header("persistent", "true"), stomp.SendOpt.Header(dedupHeader, id)}
		// Paced (chaos) sends each wait for a receipt: a send that was only
		// buffered when the broker went away would otherwise be lost unseen.
		if rate > 0 || i == len(ids)-1 || i%500 == 499 {
			opts = append(opts, stomp.SendOpt.Receipt)
		}
		if err := conn.Send(dest, "application/json", []byte(body), opts...); err != nil {
			_ = conn.MustDisconnect()
			conn = nil
			continue
		}
		i++
	}
	return nil
}

// collector consumes a destination for the whole test, reconnecting when
// the broker restarts. It records, per input id (header chaos-id), the set
// of broker message-ids seen: a copy redelivered to the collector after a
// reconnect has the same message-id and counts once; a duplicate effect is a
// second message-id.
type collector struct {
	b    *testenv.Broker
	dest string

	mu       sync.Mutex
	seen     map[string]map[string]bool
	distinct int
	last     time.Time

	cancel context.CancelFunc
	done   chan struct{}
}

func collect(t *testing.T, b *testenv.Broker, dest string) *collector {
	ctx, cancel := context.WithCancel(context.Background())
	c := &collector{b: b, dest: dest, seen: map[string]map[string]bool{}, cancel: cancel, done: make(chan struct{})}
	go c.run(ctx)
	t.Cleanup(c.stop)
	return c
}

func (c *collector) stop() {
	c.cancel()
	<-c.done
}

func (c *collector) run(ctx context.Context) {
	defer close(c.done)
	for ctx.Err() == nil {
		err := c.session(ctx)
		if err != nil && ctx.Err() == nil {
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func (c *collector) session(ctx context.Context) error {
	conn, err := c.b.Dial(quiet)
	if err != nil {
		return err
	}
	defer conn.MustDisconnect()
	sub, err := conn.Subscribe(c.dest, stomp.AckClientIndividual, stomp.SubscribeOpt.Header("activemq.prefetchSize", "100"))
	if err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			_ = sub.Unsubscribe()
			_ = conn.Disconnect()
			return nil
		case m, ok := <-sub.C:
			if !ok {
				return errors.New("subscription closed")
			}
			if m.Err != nil {
				return m.Err
			}
			c.record(m)
			if err := conn.Ack(m); err != nil {
				return err
			}
		}
	}
}

func (c *collector) record(m *stomp.Message) {
	id := m.Header.Get("chaos-id")
	if id == "" {
		id = m.Header.Get(dedupHeader)
	}
	if id == "" {
		var v struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(m.Body, &v)
		id = v.ID
	}
	mid := m.Header.Get("message-id")
	c.mu.Lock()
	defer c.mu.Unlock()
	set := c.seen[id]
	if set == nil {
		set = map[string]bool{}
		c.seen[id] = set
	}
	if !set[mid] {
		set[mid] = true
		c.distinct++
		c.last = time.Now()
	}
}

// count is the number of distinct messages seen and when the last arrived.
func (c *collector) count() (int, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.distinct, c.last
}

// copies returns, per input id, how many distinct messages carried it.
func (c *collector) copies() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.seen))
	for id, set := range c.seen {
		out[id] = len(set)
	}
	return out
}

// waitCount blocks until the collector saw n distinct messages or timeout.
func (c *collector) waitCount(n int, timeout time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(timeout)
	for {
		got, last := c.count()
		if got >= n {
			return last, true
		}
		if time.Now().After(deadline) {
			return last, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leftover subscribes to dest for wait and returns how many messages it
// received (acknowledging none, so they stay for the evidence).
func leftover(b *testenv.Broker, dest string, wait time.Duration) (int, error) {
	conn, err := b.Dial(quiet)
	if err != nil {
		return 0, err
	}
	defer conn.MustDisconnect()
	sub, err := conn.Subscribe(dest, stomp.AckClientIndividual, stomp.SubscribeOpt.Header("activemq.prefetchSize", "1000"))
	if err != nil {
		return 0, err
	}
	n := 0
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-sub.C:
			if !ok || m.Err != nil {
				return n, fmt.Errorf("subscription ended")
			}
			n++
		case <-timer.C:
			return n, nil
		}
	}
}

// quiet keeps go-stomp from logging the subscription errors every broker
// restart causes (the collector reconnects by itself).
var quiet = testenv.QuietLogs()
