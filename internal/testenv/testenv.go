// Package testenv starts the real services integration tests need (Redis,
// ActiveMQ, RabbitMQ) on free loopback ports, once per test binary, and stops
// them when the binary exits. Under CI=true a service that cannot be started
// fails the test; otherwise the test is skipped with a message naming
// `make test-deps`.
package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// CI reports whether tests run under CI=true, where missing services fail.
func CI() bool { return os.Getenv("CI") == "true" }

// Unavailable skips the test (locally) or fails it (CI) because a service
// could not be had.
func Unavailable(t testing.TB, service string, err error) {
	t.Helper()
	msg := fmt.Sprintf("%s unavailable: %v (install it with `make test-deps`)", service, err)
	if CI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// WaitTCP waits until addr accepts TCP connections or the timeout passes.
func WaitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not accept connections within %s: %w", addr, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// registry tracks processes started by this test binary so Main can stop them.
var registry struct {
	sync.Mutex
	procs    []*exec.Cmd
	cleanups []func()
}

// atExit registers fn to run in StopAll after the tracked processes are
// stopped (brokers stop their own processes and remove their data there).
func atExit(fn func()) {
	registry.Lock()
	defer registry.Unlock()
	registry.cleanups = append(registry.cleanups, fn)
}

// track registers a started process for cleanup at exit. The process is
// started in its own process group so that its children die with it.
func track(cmd *exec.Cmd) {
	registry.Lock()
	defer registry.Unlock()
	registry.procs = append(registry.procs, cmd)
}

// Command prepares a service command in its own process group.
func Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// Kill stops a process started with Command and its group, and waits for it.
func Kill(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
}

// Main runs the tests and then stops every service this binary started.
// Use it from TestMain: func TestMain(m *testing.M) { testenv.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	StopAll()
	os.Exit(code)
}

// StopAll stops every tracked service. Idempotent.
func StopAll() {
	registry.Lock()
	procs, cleanups := registry.procs, registry.cleanups
	registry.procs, registry.cleanups = nil, nil
	registry.Unlock()
	for _, p := range procs {
		Kill(p)
	}
	for _, fn := range cleanups {
		fn()
	}
}
