// Command clusterdemo runs a local opsrunner cluster to try things on:
// redis-server (append-only, in the demo's directory), the standalone
// broker (`opsrunner broker`) and three agents (`opsrunner serve`) sharing
// both, all on free loopback ports. It prints their addresses and process
// ids, and stops them all on Ctrl-C (SIGINT) or SIGTERM: the agents first,
// then the broker, then Redis. A process that ends meanwhile (kill -9 an
// agent to watch another take over) is reported and the others go on.
//
//	make cluster-demo                 # builds bin/opsrunner and runs this
//	bin/clusterdemo -opsrunner bin/opsrunner -dir /tmp/demo
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/opsrunner/opsrunner/internal/subproc"
)

// options are the demo's flags.
type options struct {
	opsrunner string // the opsrunner binary
	redis     string // the redis-server binary
	dir       string // data and logs; empty: a temporary directory, removed at the end
	agents    int
}

func main() {
	var o options
	flag.StringVar(&o.opsrunner, "opsrunner", "bin/opsrunner", "the opsrunner binary (make build)")
	flag.StringVar(&o.redis, "redis-server", "redis-server", "the redis-server binary")
	flag.StringVar(&o.dir, "dir", "", "directory for data and logs (default: a temporary one, removed on exit)")
	flag.IntVar(&o.agents, "agents", 3, "number of agents")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "clusterdemo:", err)
		os.Exit(1)
	}
}

// run starts the cluster, reports on it until ctx ends, and stops it.
func run(ctx context.Context, o options, out io.Writer) (err error) {
	if o.agents < 1 {
		return fmt.Errorf("-agents must be at least 1, got %d", o.agents)
	}
	bin, err := exec.LookPath(o.opsrunner)
	if err != nil {
		return fmt.Errorf("opsrunner binary: %w (run make build, or give -opsrunner)", err)
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	if o.dir == "" {
		if o.dir, err = os.MkdirTemp("", "opsrunner-demo-"); err != nil {
			return fmt.Errorf("make the demo directory: %w", err)
		}
		defer os.RemoveAll(o.dir)
	}
	c := &cluster{dir: o.dir, out: out, exited: make(chan *proc, o.agents+2)}
	defer c.stopAll()
	if err := c.start(ctx, o, bin); err != nil {
		return err
	}
	c.report(ctx)
	fmt.Fprintln(out, "stopping…")
	c.stopAll()
	fmt.Fprintln(out, "all stopped")
	return nil
}

// cluster is the demo's processes, which it owns: started by start,
// stopped by stopAll.
type cluster struct {
	dir    string
	out    io.Writer
	procs  []*proc    // in start order; stopped in reverse
	agents []string   // the agents' base URLs
	exited chan *proc // each proc, once, when it ends
}

// start starts Redis, the broker and the agents, waits until each listens
// and prints where they are.
func (c *cluster) start(ctx context.Context, o options, bin string) error {
	redisPort, err := freePort()
	if err != nil {
		return err
	}
	brokerPort, err := freePort()
	if err != nil {
		return err
	}
	redisDir := filepath.Join(c.dir, "redis")
	if err := os.MkdirAll(redisDir, 0o755); err != nil {
		return fmt.Errorf("make %s: %w", redisDir, err)
	}
	redis, err := c.spawn(ctx, "redis", fmt.Sprintf("127.0.0.1:%d", redisPort), o.redis, nil,
		"--port", strconv.Itoa(redisPort), "--bind", "127.0.0.1", "--dir", redisDir,
		"--appendonly", "yes", "--save", "", "--daemonize", "no")
	if err != nil {
		return err
	}
	redisURL := fmt.Sprintf("redis://%s/0", redis.addr)
	c.print(redis, redisURL, "append-only file in "+redisDir)
	broker, err := c.spawn(ctx, "broker", fmt.Sprintf("127.0.0.1:%d", brokerPort), bin, nil,
		"broker", "--addr", fmt.Sprintf("127.0.0.1:%d", brokerPort), "--data-dir", filepath.Join(c.dir, "broker"))
	if err != nil {
		return err
	}
	brokerURL := "stomp://" + broker.addr
	c.print(broker, brokerURL, "opsrunner broker")
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	var first string
	for i := 1; i <= o.agents; i++ {
		id := fmt.Sprintf("agent-%d", i)
		port, err := freePort()
		if err != nil {
			return err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		env := []string{
			"OPSRUNNER_HTTP_ADDR=" + addr,
			"OPSRUNNER_DATA_DIR=" + filepath.Join(c.dir, id),
			"OPSRUNNER_AGENT_ID=" + id,
			"OPSRUNNER_REDIS_URL=" + redisURL,
			"OPSRUNNER_CLUSTER_SIZE=" + strconv.Itoa(o.agents),
			"OPSRUNNER_BROKER_URL=" + brokerURL,
			"OPSRUNNER_SECRETS_KEY=" + base64.StdEncoding.EncodeToString(key),
		}
		a, err := c.spawn(ctx, id, addr, bin, env, "serve")
		if err != nil {
			return err
		}
		c.print(a, "http://"+addr, "opsrunner serve")
		c.agents = append(c.agents, "http://"+addr)
		if first == "" {
			first = "http://" + addr
		}
	}
	fmt.Fprintf(c.out, "\nlogs in %s\ntry:  %s --server %s members\n      %s --server %s deploy samples/hello\nCtrl-C stops them all.\n",
		filepath.Join(c.dir, "logs"), bin, first, bin, first)
	return nil
}

// print writes one line per process: name, URL, pid and a note. Tests
// read these lines.
func (c *cluster) print(p *proc, url, note string) {
	fmt.Fprintf(c.out, "%-8s %-28s pid %-7d %s\n", p.name, url, p.cmd.Process.Pid, note)
}

// report waits until ctx ends, saying once when every agent is ready
// (/readyz: started, quorum, Redis reached) and when a process ends.
func (c *cluster) report(ctx context.Context) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	announced := false
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-c.exited:
			fmt.Fprintf(c.out, "%s (pid %d) ended: %v; the others go on\n", p.name, p.cmd.Process.Pid, p.waitErr)
		case <-tick.C:
			if !announced && c.allReady(ctx) {
				announced = true
				fmt.Fprintf(c.out, "all %d agents ready (GET /readyz answers 200 on each)\n", len(c.agents))
			}
		}
	}
}

// allReady reports whether every agent's /readyz answers 200.
func (c *cluster) allReady(ctx context.Context) bool {
	client := &http.Client{Timeout: 2 * time.Second}
	for _, base := range c.agents {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
		if err != nil {
			return false
		}
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false
		}
	}
	return true
}

// stopAll stops every process, the last started first, and waits for each.
func (c *cluster) stopAll() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].stop(40 * time.Second) // an agent's shutdown_timeout is 30s
	}
}

// proc is one child process. Its waiter goroutine ends when the process
// does, closing done.
type proc struct {
	name    string
	addr    string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error // set before done is closed
}

// spawn starts path with args, its output in logs/<name>.log, and waits
// until it accepts connections on addr (or ends, or ctx ends). Inherited
// OPSRUNNER_* variables are dropped so that only env configures it.
func (c *cluster) spawn(ctx context.Context, name, addr, path string, env []string, args ...string) (*proc, error) {
	logDir := filepath.Join(c.dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("make %s: %w", logDir, err)
	}
	logFile, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(inheritedEnv(), env...)
	// Its own process group, so that a Ctrl-C reaches only the demo, which
	// stops the processes in order; killed with the demo if it dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &proc{name: name, addr: addr, cmd: cmd, done: make(chan struct{})}
	err = subproc.Start(cmd, func(err error) {
		p.waitErr = err
		close(p.done)
		c.exited <- p // buffered for every proc: never blocks
	})
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c.procs = append(c.procs, p)
	if err := p.awaitListening(ctx); err != nil {
		return nil, fmt.Errorf("%s: %w (see %s)", name, err, logFile.Name())
	}
	return p, nil
}

// awaitListening waits until p accepts TCP connections on its address.
func (p *proc) awaitListening(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		conn, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("ended before listening on %s: %v", p.addr, p.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// stop asks p to end (SIGTERM), kills it after grace, and waits until it
// has ended. Calling it on an ended process does nothing.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// inheritedEnv is the demo's environment without OPSRUNNER_* variables.
func inheritedEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OPSRUNNER_") {
			env = append(env, kv)
		}
	}
	return env
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
