package npminterop

import (
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/broker"
	"github.com/opsrunner/opsrunner/internal/testenv"
)

// clientResult is the JSON line testdata/client.cjs prints.
type clientResult struct {
	Body         string `json:"body"`
	Colour       string `json:"colour"`
	ConnectError string `json:"connectError"`
	Error        string `json:"error"`
}

// TestStompit runs stompit under Node against a broker with users over
// TCP: a round trip with a login (send, subscribe, ACK, DISCONNECT with a
// receipt), and wrong logins that stompit must report as a connection
// error.
func TestStompit(t *testing.T) {
	dir := installClient(t)
	b, err := broker.Start(broker.Config{Users: []broker.User{{
		Login: "app", Passcode: "s3cret", Read: []string{"/queue/npm.*"}, Write: []string{"/queue/npm.*"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })

	t.Run("round trip", func(t *testing.T) {
		res, err := runClient(t, dir, b.Addr(), "app", "s3cret", "roundtrip")
		if err != nil {
			t.Fatalf("client: %v (%+v)", err, res)
		}
		if res.Body != "hello from stompit" || res.Colour != "blue" {
			t.Errorf("received %+v", res)
		}
		// The ACK reached the broker before the DISCONNECT's receipt.
		if st, _ := b.QueueStats("/queue/npm.interop"); st != (broker.Stats{}) {
			t.Errorf("queue after the client: %+v, want empty", st)
		}
	})
	for _, login := range [][2]string{{"app", "wrong"}, {"nobody", "s3cret"}} {
		t.Run("wrong login "+login[0]+"/"+login[1], func(t *testing.T) {
			res, err := runClient(t, dir, b.Addr(), login[0], login[1], "wrong-login")
			if err != nil {
				t.Fatalf("client: %v (%+v)", err, res)
			}
			if !strings.Contains(res.ConnectError, "access refused") {
				t.Errorf("stompit reported %+v, want a connect error saying access refused", res)
			}
		})
	}
}

// installClient installs testdata's client with npm ci (see
// testenv.NPMInstall) and returns its directory.
func installClient(t *testing.T) string {
	return testenv.NPMInstall(t, "stompit", "testdata", "package.json", "package-lock.json", "client.cjs")
}

// runClient runs testdata/client.cjs in dir and decodes the line it
// prints; err is set when it exits non-zero.
func runClient(t *testing.T, dir string, addr net.Addr, login, passcode, mode string) (clientResult, error) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "client.cjs", host, port, login, passcode, mode)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	if s := strings.TrimSpace(stderr.String()); s != "" {
		t.Logf("%s stderr:\n%s", mode, s)
	}
	var res clientResult
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("client output %q: %v (exit: %v)", out, err, runErr)
	}
	return res, runErr
}
