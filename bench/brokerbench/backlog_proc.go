package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/opsrunner/opsrunner/internal/brokercaps"
	"github.com/opsrunner/opsrunner/internal/procstat"
	"github.com/opsrunner/opsrunner/internal/stompc"
	"github.com/opsrunner/opsrunner/internal/subproc"
	"github.com/opsrunner/opsrunner/internal/testenv"
)

// brokerProc is one `opsrunner broker` child process on a fixed address and
// data directory, measured from outside as a black box: any build of the
// binary can be measured (today's and a rewritten broker alike). The
// process runs in its own process group and dies with this program
// (Pdeathsig). Not safe for concurrent use: one benchmark step drives it.
type brokerProc struct {
	bin     string // the opsrunner binary
	addr    string // host:port on loopback
	dataDir string // --data-dir
	logPath string // the child's stdout and stderr, appended

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
}

// newBrokerProc prepares (does not start) a broker child of bin with its
// data under dir/data and its output in dir/out.log, on a free port.
func newBrokerProc(bin, dir string) (*brokerProc, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return &brokerProc{bin: bin, addr: addr, dataDir: filepath.Join(dir, "data"), logPath: filepath.Join(dir, "out.log")}, nil
}

// startTimed starts the process and blocks until it answers a STOMP
// CONNECT (polled every 5 ms) or limit passes; it returns the time from
// the start of the process to CONNECTED.
func (p *brokerProc) startTimed(limit time.Duration) (time.Duration, error) {
	if p.cmd != nil {
		return 0, errors.New("start broker: already running")
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("start broker: %w", err)
	}
	cmd := exec.Command(p.bin, "broker", "--addr", p.addr, "--data-dir", p.dataDir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	t0 := time.Now()
	done := make(chan struct{})
	if err := subproc.Start(cmd, func(error) { logf.Close(); close(done) }); err != nil {
		logf.Close()
		return 0, fmt.Errorf("start broker %s: %w", p.bin, err)
	}
	p.cmd, p.done = cmd, done
	for {
		c, err := p.connect(time.Second)
		if err == nil {
			took := time.Since(t0)
			_ = c.Close()
			return took, nil
		}
		select {
		case <-done:
			p.cmd = nil
			return 0, fmt.Errorf("start broker: the process exited: %s", p.logTail(10))
		default:
		}
		if time.Since(t0) > limit {
			p.kill()
			return 0, fmt.Errorf("start broker: no CONNECTED within %s: %v", limit, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// firstMessage subscribes to queue with client-individual ack and prefetch
// 1, waits up to limit for one MESSAGE and disconnects without acking it,
// so the message stays queued.
func (p *brokerProc) firstMessage(queue string, limit time.Duration) error {
	c, err := p.connect(5 * time.Second)
	if err != nil {
		return fmt.Errorf("first message: %w", err)
	}
	defer c.Close()
	if err := c.Subscribe(queue, brokercaps.For(brokercaps.Embedded).PrefetchOption(1)); err != nil {
		return fmt.Errorf("first message: %w", err)
	}
	got := make(chan error, 1)
	go func() { // owner: firstMessage; ends with the connection, closed below at the latest
		_, err := c.Next()
		got <- err
	}()
	select {
	case err = <-got:
	case <-time.After(limit):
		err = fmt.Errorf("no MESSAGE within %s", limit)
	}
	if err != nil {
		return fmt.Errorf("first message: %w", err)
	}
	return c.Disconnect()
}

// connect opens a lean STOMP connection, CONNECTED within timeout.
func (p *brokerProc) connect(timeout time.Duration) (*stompc.Conn, error) {
	nc, err := net.DialTimeout("tcp", p.addr, timeout)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(timeout))
	c, err := stompc.Connect(nc, stompc.Options{Host: "localhost"})
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// dial opens a go-stomp connection (the client measure uses).
func (p *brokerProc) dial() (*stomp.Conn, error) {
	return stomp.Dial("tcp", p.addr, stomp.ConnOpt.Host("localhost"), stomp.ConnOpt.HeartBeat(0, 0), testenv.QuietLogs())
}

// stop ends the process with SIGTERM and waits for it to exit (SIGKILL
// after limit); it returns how long the exit took. A no-op when stopped.
func (p *brokerProc) stop(limit time.Duration) (time.Duration, error) {
	if p.cmd == nil {
		return 0, nil
	}
	t0 := time.Now()
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		p.cmd = nil
		return time.Since(t0), nil
	case <-time.After(limit):
		p.kill()
		return time.Since(t0), fmt.Errorf("stop broker: still running %s after SIGTERM, killed", limit)
	}
}

// kill ends the process group with SIGKILL and waits. Idempotent.
func (p *brokerProc) kill() {
	if p.cmd == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	p.cmd = nil
}

// pid is the broker's process id, 0 while it is stopped.
func (p *brokerProc) pid() int {
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

func (p *brokerProc) logTail(n int) string {
	data, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// memory is a process's resident set from /proc/PID/status, in bytes:
// VmRSS is RssAnon (heap, stacks, runtime) plus RssFile (the executable and
// file mappings, such as a memory-mapped journal) plus RssShmem.
type memory struct {
	VmRSS, RssAnon, RssFile int64
}

func (m memory) max(o memory) memory {
	return memory{max(m.VmRSS, o.VmRSS), max(m.RssAnon, o.RssAnon), max(m.RssFile, o.RssFile)}
}

// readMemory reads process pid's memory figures.
func readMemory(pid int) (memory, error) {
	if pid == 0 {
		return memory{}, errors.New("read memory: the broker is not running")
	}
	m, err := procstat.ReadMemory(pid)
	if err != nil {
		return memory{}, err
	}
	return memory{VmRSS: m.VmRSS, RssAnon: m.RssAnon, RssFile: m.RssFile}, nil
}

// sampler records the highest memory of a process, sampled every 100 ms on
// a goroutine until stop is called.
type sampler struct {
	stopCh chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	top    memory
}

func sampleMemory(pid int) *sampler {
	s := &sampler{stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() { // owner: s; ends at stop
		defer close(s.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			s.sample(pid)
			select {
			case <-s.stopCh:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *sampler) sample(pid int) {
	m, err := readMemory(pid)
	if err != nil {
		return // the caller reads the memory itself too
	}
	s.mu.Lock()
	s.top = s.top.max(m)
	s.mu.Unlock()
}

// stop ends sampling and returns the highest figures seen.
func (s *sampler) stop() memory {
	close(s.stopCh)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.top
}

// diskUse is what a directory takes on disk: the sum of its files' sizes
// and of the blocks allocated to them (smaller for sparse files, larger
// for preallocated ones).
type diskUse struct {
	Size, Allocated int64
}

func measureDisk(dir string) (diskUse, error) {
	var d diskUse
	err := filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while we walked (compaction)
		}
		if err != nil || e.IsDir() {
			return err
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		d.Size += info.Size()
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			d.Allocated += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		return diskUse{}, fmt.Errorf("disk use of %s: %w", dir, err)
	}
	return d, nil
}

// freeDisk is the space available to us on the file system holding dir.
func freeDisk(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free disk of %s: %w", dir, err)
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// buildOpsrunner builds ./cmd/opsrunner of the module we run in (without
// the race detector) into dir and returns the binary's path.
func buildOpsrunner(dir string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find module: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the opsrunner module (go env GOMOD is empty)")
	}
	bin := filepath.Join(dir, "opsrunner")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/opsrunner")
	cmd.Dir = filepath.Dir(gomod)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/opsrunner: %w\n%s", err, msg)
	}
	return bin, nil
}
