package broker

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
)

// crashDirEnv makes TestMain run a broker on that data directory instead of
// the tests: the crash test re-executes the test binary with it and kills it.
const crashDirEnv = "OPSRUNNER_BROKER_CRASH_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		b, err := Start(Config{DataDir: dir})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println("ADDR", b.Addr())
		select {} // until killed
	}
	os.Exit(m.Run())
}

// startChild runs a broker in a child process and returns it with its address.
func startChild(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("child broker did not start: %v", err)
	}
	return cmd, strings.TrimSpace(strings.TrimPrefix(line, "ADDR "))
}

func TestCrashKeepsPersistentAndCommittedOnly(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd, addr := startChild(t, dir)
	c, err := stomp.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	for i := range n { // receipt on the last one: all before it are durable too
		opts := []func(*frame.Frame) error{persistent}
		if i == n-1 {
			opts = append(opts, stomp.SendOpt.Receipt)
		}
		must(t, c.Send("/queue/crash", "", []byte(fmt.Sprint("p", i)), opts...))
	}
	send(t, c, "/queue/crash-transient", "t") // not persistent
	// consume and ack the first 10 in a committed transaction that also sends
	s := subscribe(t, c, "/queue/crash", stomp.AckClientIndividual, stomp.SubscribeOpt.Header("prefetch-count", "10"))
	tx := c.Begin()
	for range 10 {
		must(t, tx.Ack(recv(t, s)))
	}
	must(t, tx.Send("/queue/crash-out", "", []byte("committed"), persistent))
	must(t, tx.CommitWithReceipt())
	// an open transaction and unacked deliveries at the moment of the crash
	tx2 := c.Begin()
	for range 10 {
		must(t, tx2.Ack(recv(t, s)))
	}
	must(t, tx2.Send("/queue/crash-out", "", []byte("uncommitted"), persistent))
	// a stream still going on while the broker dies
	go func() {
		for i := 0; ; i++ {
			if c.Send("/queue/crash-stream", "", []byte("s"), persistent) != nil {
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	must(t, cmd.Process.Kill()) // SIGKILL
	_ = cmd.Wait()

	b := startBroker(t, Config{DataDir: dir})
	want := map[string]int{"/queue/crash": n - 10, "/queue/crash-out": 1, "/queue/crash-transient": 0}
	for dest, pending := range want {
		if st, _ := b.QueueStats(dest); st.Pending != pending {
			t.Errorf("%s: %d pending after crash, want %d", dest, st.Pending, pending)
		}
	}
	c2 := dial(t, b)
	if m := recv(t, subscribe(t, c2, "/queue/crash-out", stomp.AckAuto)); string(m.Body) != "committed" {
		t.Errorf("got %q", m.Body)
	}
	s2 := subscribe(t, c2, "/queue/crash", stomp.AckAuto)
	for i := 10; i < n; i++ {
		if m := recv(t, s2); string(m.Body) != fmt.Sprint("p", i) {
			t.Fatalf("got %q want p%d", m.Body, i)
		}
	}
	st, _ := b.QueueStats("/queue/crash-stream")
	t.Logf("%d messages of the interrupted stream survived", st.Pending)
}
