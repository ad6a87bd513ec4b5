package pyinterop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/broker"
	"github.com/opsrunner/opsrunner/internal/testenv"
)

// result is the JSON object testdata/client.py prints; each case fills
// the fields it is about.
type result struct {
	Fail          string   `json:"fail"`
	Version       string   `json:"version"`
	Server        string   `json:"server"`
	Body          string   `json:"body"`
	Colour        string   `json:"colour"`
	Ack           bool     `json:"ack"`
	Redelivered   string   `json:"redelivered"`
	SameMessageID bool     `json:"sameMessageId"`
	Order         []string `json:"order"`
	AfterAbort    string   `json:"afterAbort"`
	Exception     string   `json:"exception"`
	Error         string   `json:"error"`
	Connected     bool     `json:"connected"`
	SendError     string   `json:"sendError"`
}

// maxFrameBytes is the test broker's frame limit: the oversized case
// sends 8 MiB.
const maxFrameBytes = 64 << 10

// TestStompPy runs stomp.py against an embedded broker with users: app
// may read and write /queue/py.*; each case is one run of the client.
func TestStompPy(t *testing.T) {
	python := findPython(t)
	b, err := broker.Start(broker.Config{
		MaxFrameBytes: maxFrameBytes,
		Users: []broker.User{{
			Login: "app", Passcode: "s3cret", Read: []string{"/queue/py.*"}, Write: []string{"/queue/py.*"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	run := func(t *testing.T, login, passcode, mode, dest string) result {
		t.Helper()
		res := runClient(t, python, b.Addr(), login, passcode, mode, dest)
		if res.Fail != "" {
			t.Fatalf("stomp.py: %s", res.Fail)
		}
		return res
	}

	t.Run("send, subscribe and ACK", func(t *testing.T) {
		t.Parallel()
		res := run(t, "app", "s3cret", "roundtrip", "/queue/py.roundtrip")
		if res.Version != "1.2" || !strings.HasPrefix(res.Server, "opsrunner/") {
			t.Errorf("CONNECTED version %q server %q, want 1.2 from opsrunner", res.Version, res.Server)
		}
		if res.Body != "hello from stomp.py" || res.Colour != "blue" || !res.Ack {
			t.Errorf("received %+v, want the body, the colour header and an ack header", res)
		}
		// The ACK was applied before the DISCONNECT's receipt.
		if st, _ := b.QueueStats("/queue/py.roundtrip"); st != (broker.Stats{}) {
			t.Errorf("queue after the client: %+v, want empty", st)
		}
	})
	t.Run("NACK redelivers", func(t *testing.T) {
		t.Parallel()
		res := run(t, "app", "s3cret", "nack", "/queue/py.nack")
		if res.Body != "nack me" || res.Redelivered != "true" || !res.SameMessageID {
			t.Errorf("after NACK: %+v, want the same message again, redelivered:true", res)
		}
	})
	t.Run("transactions", func(t *testing.T) {
		t.Parallel()
		res := run(t, "app", "s3cret", "transactions", "/queue/py.tx")
		if strings.Join(res.Order, ",") != "outside,a,b" {
			t.Errorf("order %v, want outside,a,b: a transaction's sends wait for its COMMIT", res.Order)
		}
		if res.AfterAbort != "after abort" {
			t.Errorf("after ABORT got %q, want the message sent after it: the aborted send was delivered", res.AfterAbort)
		}
	})
	t.Run("wrong login raises ConnectFailedException", func(t *testing.T) {
		t.Parallel()
		for _, login := range [][2]string{{"app", "wrong"}, {"nobody", "s3cret"}} {
			res := run(t, login[0], login[1], "wrong-login-wait", "")
			if res.Exception != "ConnectFailedException" || res.Error != "access refused" {
				t.Errorf("%s/%s: %+v, want ConnectFailedException after an ERROR saying access refused", login[0], login[1], res)
			}
		}
	})
	t.Run("wrong login without waiting (upstream's test_connect_nowait_error)", func(t *testing.T) {
		t.Parallel()
		res := run(t, "invalid", "user", "wrong-login-nowait", "")
		if res.Connected || res.Error != "access refused" {
			t.Errorf("%+v, want not connected, after an ERROR saying access refused", res)
		}
	})
	t.Run("permission denied", func(t *testing.T) {
		t.Parallel()
		res := run(t, "app", "s3cret", "denied", "/queue/elsewhere")
		if !strings.Contains(res.Error, "no write permission on /queue/elsewhere") || res.Connected {
			t.Errorf("%+v, want an ERROR naming the write permission, then the connection closed", res)
		}
	})
	t.Run("oversized frame is answered with ERROR, not a reset", func(t *testing.T) {
		t.Parallel()
		res := run(t, "app", "s3cret", "oversized", "/queue/py.big")
		if want := fmt.Sprintf("frame larger than %d bytes", maxFrameBytes); !strings.Contains(res.Error, want) {
			t.Errorf("ERROR %q, want one saying %q", res.Error, want)
		}
		if res.SendError != "" {
			t.Errorf("writing the frame failed: %s (the broker reset the connection)", res.SendError)
		}
	})
}

// findPython returns a Python 3 that imports stomp.py 8: python3 on PATH,
// or Debian's /usr/bin/python3 (python3-stomp installs there, and a
// python3 of pyenv or a virtualenv may come first on PATH). Without one,
// the test is skipped (locally) or fails (CI=true).
func findPython(t *testing.T) string {
	t.Helper()
	var errs []error
	for _, name := range []string{"python3", "/usr/bin/python3"} {
		path, err := exec.LookPath(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out, err := exec.Command(path, "-c", "import stomp; print(stomp.__version__[0])").CombinedOutput()
		if err == nil && strings.TrimSpace(string(out)) == "8" {
			return path
		}
		errs = append(errs, fmt.Errorf("%s: import stomp: %v %s", path, err, strings.TrimSpace(string(out))))
	}
	testenv.Unavailable(t, "python3-stomp 8 (Debian)", errors.Join(errs...))
	return ""
}

// runClient runs testdata/client.py and decodes the last line it prints.
func runClient(t *testing.T, python string, addr net.Addr, login, passcode, mode, dest string) result {
	t.Helper()
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := []string{filepath.Join("testdata", "client.py"), host, port, login, passcode, mode}
	if dest != "" {
		args = append(args, dest)
	}
	cmd := exec.CommandContext(ctx, python, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	if s := strings.TrimSpace(stderr.String()); s != "" {
		t.Logf("%s stderr:\n%s", mode, s)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var res result
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil || runErr != nil {
		t.Fatalf("client %s: output %q: %v (exit: %v)", mode, out, err, runErr)
	}
	return res
}
