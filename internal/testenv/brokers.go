package testenv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/opsrunner/opsrunner/internal/subproc"
)

// Broker kinds, as in Broker.Kind and brokercaps.
const (
	KindEmbedded = "embedded"
	KindActiveMQ = "activemq"
	KindRabbitMQ = "rabbitmq"
)

// Broker is a STOMP broker process owned by the test binary (or by a program
// such as bench/brokerbench). Every broker runs as a separate process in its
// own process group, so Kill9 is a real crash. Its methods are safe for
// concurrent use; a Broker is made only by the Start* functions.
type Broker struct {
	// Kind is "embedded", "activemq" or "rabbitmq".
	Kind string
	// Addr is the STOMP listener, host:port on 127.0.0.1.
	Addr string
	// Login and Passcode go on CONNECT ("" means none is sent).
	Login, Passcode string
	// Host is the STOMP virtual host for CONNECT ("/" for RabbitMQ).
	Host string
	// TLSAddr, when not empty, is a second STOMP listener that speaks TLS
	// and requires a client certificate; TLS holds the PEM files to reach
	// it (RabbitMQ and ActiveMQ).
	TLSAddr string
	TLS     TLSFiles
	// Dir is the broker's private folder: configuration, data and out.log
	// (the process's output). It is removed when the binary's services stop.
	Dir string

	launch     func() (*exec.Cmd, error) // one run of the broker process
	startLimit time.Duration             // how long a start may take

	mu   sync.Mutex
	proc *process // nil while stopped
}

type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
	log  *os.File
}

// Start starts the broker (if it is not running) on its address and data and
// blocks until it answers a STOMP CONNECT. Calling it on a running broker is
// a no-op.
func (b *Broker) Start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.proc != nil {
		select {
		case <-b.proc.done:
			b.proc = nil
		default:
			return nil
		}
	}
	logf, err := os.OpenFile(filepath.Join(b.Dir, "out.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: %w", b.Kind, err)
	}
	cmd, err := b.launch()
	if err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", b.Kind, err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	p := &process{cmd: cmd, done: make(chan struct{}), log: logf}
	if err := subproc.Start(cmd, func(error) { logf.Close(); close(p.done) }); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", b.Kind, err)
	}
	b.proc = p
	if err := waitSTOMP(b, p.done, b.startLimit); err != nil {
		b.killLocked()
		return fmt.Errorf("start %s: %w\n%s", b.Kind, err, tail(filepath.Join(b.Dir, "out.log"), 20))
	}
	return nil
}

// Stop stops the broker gracefully (SIGTERM, then SIGKILL after 30 s) and
// blocks until it has exited. A paused broker is resumed first (a stopped
// process would not act on SIGTERM). Its data stays for a later Start.
// Idempotent.
func (b *Broker) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.proc == nil {
		return
	}
	_ = syscall.Kill(-b.proc.cmd.Process.Pid, syscall.SIGCONT)
	_ = syscall.Kill(-b.proc.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-b.proc.done:
	case <-time.After(30 * time.Second):
	}
	b.killLocked()
}

// Kill9 crashes the broker: SIGKILL to its whole process group, then waits
// for it to exit. Its data stays as the crash left it. Idempotent.
func (b *Broker) Kill9() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.killLocked()
}

// Pause freezes the broker: SIGSTOP to its whole process group. The process
// keeps its sockets, so clients stay connected (and new TCP connections are
// still accepted by the kernel) but nothing is answered: no frames, no
// heart-beats, as with a hung broker or a network that drops packets. It
// does not block and is a no-op on a stopped broker; calling it twice is
// harmless. Resume, Stop, Kill9 and the cleanup at exit all end a pause.
func (b *Broker) Pause() {
	b.signal(syscall.SIGSTOP)
}

// Resume continues a paused broker: SIGCONT to its whole process group. It
// does not block (the broker then catches up on its own) and is a no-op on
// a running or stopped broker.
func (b *Broker) Resume() {
	b.signal(syscall.SIGCONT)
}

// signal sends sig to the broker's process group if it is running.
func (b *Broker) signal(sig syscall.Signal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.proc == nil {
		return
	}
	_ = syscall.Kill(-b.proc.cmd.Process.Pid, sig)
}

// killLocked sends SIGKILL, which also ends a paused (stopped) process, and
// waits for the broker to exit.
func (b *Broker) killLocked() {
	if b.proc == nil {
		return
	}
	_ = syscall.Kill(-b.proc.cmd.Process.Pid, syscall.SIGKILL)
	<-b.proc.done
	b.proc = nil
}

// Restart stops the broker gracefully and starts it again on the same
// address and data; it fails t if the broker does not come back.
func (b *Broker) Restart(t testing.TB) {
	t.Helper()
	b.Stop()
	if err := b.Start(); err != nil {
		t.Fatalf("restart %s broker: %v", b.Kind, err)
	}
}

// remove kills the broker and deletes its folder (at exit).
func (b *Broker) remove() {
	b.Kill9()
	_ = os.RemoveAll(b.Dir)
}

// DialOptions returns the go-stomp options that log in to this broker:
// login/passcode, virtual host, and heart-beats off (tests and benchmarks
// must not be disconnected while they sit on a breakpoint or a slow CI).
func (b *Broker) DialOptions() []func(*stomp.Conn) error {
	opts := []func(*stomp.Conn) error{
		stomp.ConnOpt.Host(b.Host),
		stomp.ConnOpt.HeartBeat(0, 0),
	}
	if b.Login != "" {
		opts = append(opts, stomp.ConnOpt.Login(b.Login, b.Passcode))
	}
	return opts
}

// QuietLogs is a go-stomp option that drops go-stomp's own log lines (every
// dropped connection and broker restart logs); tests see errors as values.
func QuietLogs() func(*stomp.Conn) error { return stomp.ConnOpt.Logger(quietLogger{}) }

type quietLogger struct{}

func (quietLogger) Debugf(string, ...any)   {}
func (quietLogger) Debug(string)            {}
func (quietLogger) Infof(string, ...any)    {}
func (quietLogger) Info(string)             {}
func (quietLogger) Warningf(string, ...any) {}
func (quietLogger) Warning(string)          {}
func (quietLogger) Errorf(string, ...any)   {}
func (quietLogger) Error(string)            {}

// Dial connects a go-stomp client to the broker with DialOptions followed by
// extra. It blocks until CONNECTED or an error.
func (b *Broker) Dial(extra ...func(*stomp.Conn) error) (*stomp.Conn, error) {
	return stomp.Dial("tcp", b.Addr, append(b.DialOptions(), extra...)...)
}

// newBroker makes a stopped broker with a fresh folder and a free port, and
// registers its removal at exit.
func newBroker(kind string) (*Broker, int, error) {
	dir, err := os.MkdirTemp("", "opsrunner-"+kind+"-")
	if err != nil {
		return nil, 0, fmt.Errorf("start %s: %w", kind, err)
	}
	port, err := FreePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, 0, err
	}
	b := &Broker{
		Kind:       kind,
		Addr:       net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Host:       "localhost",
		Dir:        dir,
		startLimit: 90 * time.Second,
	}
	atExit(b.remove)
	return b, port, nil
}

// sharedBroker is one lazily started broker per test binary.
type sharedBroker struct {
	once sync.Once
	b    *Broker
	err  error
}

var sharedBrokers struct {
	embedded, embeddedAuth, activemq, rabbitmq sharedBroker
}

func (s *sharedBroker) get(t testing.TB, service string, start func() (*Broker, error)) *Broker {
	t.Helper()
	s.once.Do(func() { s.b, s.err = start() })
	if s.err != nil {
		Unavailable(t, service, s.err)
	}
	s.b.LogOnFailure(t)
	return s.b
}

// LogOnFailure makes a failing t print the last lines of b's output (a
// shared broker's covers every test using it; an embedded broker logs the
// protocol errors it answers before closing a connection). Register it
// after any clean-up that removes b.Dir: clean-ups run last first.
func (b *Broker) LogOnFailure(t testing.TB) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s broker output (last lines of %s):\n%s", b.Kind, filepath.Join(b.Dir, "out.log"), tail(filepath.Join(b.Dir, "out.log"), 40))
		}
	})
}

// Embedded returns the binary's shared embedded broker (package broker, run
// as `opsrunner broker`), starting it on first use. Tests sharing it use
// unique destination names. A test that restarts or kills it must not run
// in parallel with others using it.
func Embedded(t testing.TB) *Broker {
	t.Helper()
	return sharedBrokers.embedded.get(t, "embedded broker", StartEmbedded)
}

// EmbeddedWithUsers returns the binary's shared embedded broker with
// authentication on (StartEmbeddedWithUsers), starting it on first use.
func EmbeddedWithUsers(t testing.TB) *Broker {
	t.Helper()
	return sharedBrokers.embeddedAuth.get(t, "embedded broker", StartEmbeddedWithUsers)
}

// Users of the embedded broker StartEmbeddedWithUsers starts: the one its
// Broker logs in as (passcode stored as a bcrypt hash, the path a real
// deployment takes), and one that may only read /queue/public.*.
const (
	EmbeddedLogin    = "conformance"
	EmbeddedPasscode = "conformance-pass"
	// embeddedPasscodeHash is bcrypt(EmbeddedPasscode), cost 4.
	embeddedPasscodeHash = "$2a$04$WSPpcy5SsPxmf5KrLySvA.MxyA8mLfvi1ZhznJrX8yNKC1mrIdJrq"
)

// StartEmbeddedWithUsers is StartEmbedded with broker users: its Broker
// logs in as EmbeddedLogin, which may read and write everything.
func StartEmbeddedWithUsers() (*Broker, error) {
	return startEmbedded(func(b *Broker) ([]string, error) {
		users := filepath.Join(b.Dir, "users.yaml")
		text := fmt.Sprintf("- {login: %s, passcode: %q, read: [\"*\"], write: [\"*\"]}\n"+
			"- {login: reader, passcode: reader-pass, read: [\"/queue/public.*\"]}\n", EmbeddedLogin, embeddedPasscodeHash)
		if err := os.WriteFile(users, []byte(text), 0o600); err != nil {
			return nil, fmt.Errorf("write users file: %w", err)
		}
		b.Login, b.Passcode = EmbeddedLogin, EmbeddedPasscode
		return []string{"--users", users}, nil
	})
}

// StartEmbedded starts a private embedded broker process on a free port with
// its own data directory. The binary is `opsrunner broker --addr --data-dir`
// built from cmd/opsrunner once per process; while that command does not
// exist, a tiny main (brokerd_main.go) around package broker is built
// instead. StopAll stops the broker and removes its data at exit.
func StartEmbedded() (*Broker, error) {
	return startEmbedded(nil)
}

// startEmbedded starts an embedded broker process; extra, when not nil,
// prepares b and returns more arguments for it.
func startEmbedded(extra func(b *Broker) ([]string, error)) (*Broker, error) {
	bin, err := embeddedBinary()
	if err != nil {
		return nil, fmt.Errorf("start embedded broker: %w", err)
	}
	b, _, err := newBroker(KindEmbedded)
	if err != nil {
		return nil, err
	}
	b.startLimit = 30 * time.Second
	dataDir := filepath.Join(b.Dir, "data")
	var more []string
	if extra != nil {
		if more, err = extra(b); err != nil {
			return nil, err
		}
	}
	b.launch = func() (*exec.Cmd, error) {
		args := append(append([]string{}, bin[1:]...), "--addr", b.Addr, "--data-dir", dataDir)
		return exec.Command(bin[0], append(args, more...)...), nil
	}
	if err := b.Start(); err != nil {
		return nil, err
	}
	return b, nil
}

var embeddedBin struct {
	once sync.Once
	argv []string
	err  error
}

// embeddedBinary builds the embedded broker's program once per process and
// returns its argv prefix.
func embeddedBinary() ([]string, error) {
	embeddedBin.once.Do(func() {
		embeddedBin.argv, embeddedBin.err = buildEmbedded()
	})
	return embeddedBin.argv, embeddedBin.err
}

func buildEmbedded() ([]string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return nil, fmt.Errorf("find module: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return nil, errors.New("not inside the opsrunner module (go env GOMOD is empty)")
	}
	root := filepath.Dir(gomod)
	dir, err := os.MkdirTemp("", "opsrunner-bin-")
	if err != nil {
		return nil, err
	}
	atExit(func() { os.RemoveAll(dir) })

	build := func(out string, args ...string) error {
		cmd := exec.Command("go", append([]string{"build", "-o", out}, args...)...)
		cmd.Dir = root
		if msg, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", strings.Join(args, " "), err, firstLines(msg, 10))
		}
		return nil
	}
	opsrunner := filepath.Join(dir, "opsrunner")
	errCmd := build(opsrunner, "./cmd/opsrunner")
	if errCmd == nil {
		help := exec.Command(opsrunner, "broker", "--help")
		if msg, err := help.CombinedOutput(); err == nil && bytes.Contains(msg, []byte("data-dir")) {
			return []string{opsrunner, "broker"}, nil
		}
		errCmd = errors.New("cmd/opsrunner has no `broker --addr --data-dir` command yet")
	}
	brokerd := filepath.Join(dir, "brokerd")
	errD := build(brokerd, "./internal/testenv/brokerd_main.go")
	if errD == nil {
		return []string{brokerd}, nil
	}
	return nil, fmt.Errorf("no embedded broker program: %v; fallback: %v", errCmd, errD)
}

// waitSTOMP polls b.Addr until a STOMP CONNECT is answered with CONNECTED,
// the process exits (exited is closed) or limit passes.
func waitSTOMP(b *Broker, exited <-chan struct{}, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("the broker process exited during start")
		default:
		}
		if last = probeSTOMP(b); last == nil || errors.Is(last, errPortTaken) {
			return last
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("no STOMP CONNECTED on %s within %s: %v", b.Addr, limit, last)
}

func probeSTOMP(b *Broker) error {
	c, err := net.DialTimeout("tcp", b.Addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var f strings.Builder
	f.WriteString("CONNECT\naccept-version:1.0,1.1,1.2\nheart-beat:0,0\nhost:" + b.Host + "\n")
	if b.Login != "" {
		f.WriteString("login:" + b.Login + "\npasscode:" + b.Passcode + "\n")
	}
	f.WriteString("\n\x00")
	if _, err := c.Write([]byte(f.String())); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read CONNECTED: %w", err)
	}
	if strings.TrimSpace(line) != "CONNECTED" {
		return fmt.Errorf("CONNECT answered with %q", strings.TrimSpace(line))
	}
	if want := serverPrefix(b.Kind); want != "" {
		server, err := serverHeader(r)
		if err != nil {
			return fmt.Errorf("read CONNECTED: %w", err)
		}
		if !strings.HasPrefix(server, want) {
			return fmt.Errorf("%w: %s answers as server %q, not %s", errPortTaken, b.Addr, server, want)
		}
	}
	_, _ = c.Write([]byte("DISCONNECT\n\n\x00"))
	return nil
}

// errPortTaken says that a broker's STOMP port answers as another broker:
// another process took the free port between FreePort and the broker's
// listen (ActiveMQ and RabbitMQ take seconds to boot), and the broker
// itself will fail to start.
var errPortTaken = errors.New("another broker answers on the port")

// onFreePorts calls start, a start of a broker on free ports, again while
// it reports its port taken (errPortTaken), three times at most: FreePort
// finds a port free, and another process (a broker of a test package that
// runs beside) can bind it while a broker boots for seconds.
func onFreePorts(start func() (*Broker, error)) (*Broker, error) {
	for attempt := 1; ; attempt++ {
		b, err := start()
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			return b, err
		}
	}
}

// serverPrefix is how the server header of kind's CONNECTED frame starts;
// "" for the embedded broker, which listens within milliseconds of
// FreePort and is not checked.
func serverPrefix(kind string) string {
	switch kind {
	case KindActiveMQ:
		return "ActiveMQ/"
	case KindRabbitMQ:
		return "RabbitMQ/"
	}
	return ""
}

// serverHeader reads the headers of a frame from r, up to the blank line,
// and returns the value of its server header ("" when it has none).
func serverHeader(r *bufio.Reader) (string, error) {
	server := ""
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return server, nil
		}
		if v, ok := strings.CutPrefix(line, "server:"); ok && server == "" {
			server = v
		}
	}
}

// runAs makes cmd run as the named system user when we are root, after
// giving that user the broker's folder; otherwise it runs as ourselves.
func runAs(cmd *exec.Cmd, name, dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("look up user %s: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := chownR(dir, uid, gid); err != nil {
		return err
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	return nil
}

func chownR(dir string, uid, gid int) error {
	return filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(path, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", path, err)
		}
		return nil
	})
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func firstLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
