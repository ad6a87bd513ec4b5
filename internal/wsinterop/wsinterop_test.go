package wsinterop

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/broker"
	"github.com/opsrunner/opsrunner/internal/testenv"
)

// clientResult is the JSON line testdata/client.mjs prints.
type clientResult struct {
	Subprotocol string `json:"subprotocol"`
	Version     string `json:"version"`
	Server      string `json:"server"`
	Body        string `json:"body"`
	StompError  string `json:"stompError"`
	Error       string `json:"error"`
}

// TestStompJS runs @stomp/stompjs (with ws) under Node against a broker
// served in-process over WebSocket: a round trip with a login, and a wrong
// passcode that stompjs must report as a STOMP error.
func TestStompJS(t *testing.T) {
	dir := installClient(t)
	b, err := broker.New(broker.Config{Users: []broker.User{{
		Login: "app", Passcode: "s3cret", Read: []string{"/queue/interop"}, Write: []string{"/queue/interop"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	mux := http.NewServeMux()
	mux.Handle("GET /stomp", b.WebSocketHandler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/stomp"

	t.Run("round trip", func(t *testing.T) {
		res, err := runClient(t, dir, url, "app", "s3cret", "roundtrip")
		if err != nil {
			t.Fatalf("client: %v (%+v)", err, res)
		}
		if res.Subprotocol != "v12.stomp" || res.Version != "1.2" || !strings.HasPrefix(res.Server, "opsrunner/") {
			t.Errorf("negotiated %+v, want v12.stomp, STOMP 1.2, an opsrunner server", res)
		}
		if res.Body != "hello from stompjs" {
			t.Errorf("received %q", res.Body)
		}
		// The ACK reached the broker before the client disconnected.
		if st, _ := b.QueueStats("/queue/interop"); st != (broker.Stats{}) {
			t.Errorf("queue after the client: %+v, want empty", st)
		}
	})
	t.Run("wrong login", func(t *testing.T) {
		res, err := runClient(t, dir, url, "app", "wrong", "wrong-login")
		if err != nil {
			t.Fatalf("client: %v (%+v)", err, res)
		}
		if !strings.Contains(res.StompError, "access refused") {
			t.Errorf("stompjs reported %+v, want a STOMP error saying access refused", res)
		}
	})
}

// installClient installs testdata's client with npm ci (see
// testenv.NPMInstall) and returns its directory.
func installClient(t *testing.T) string {
	return testenv.NPMInstall(t, "@stomp/stompjs", "testdata", "package.json", "package-lock.json", "client.mjs")
}

// runClient runs testdata/client.mjs in dir and decodes the line it
// prints; err is set when it exits non-zero.
func runClient(t *testing.T, dir, url, login, passcode, mode string) (clientResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "client.mjs", url, login, passcode, mode)
	cmd.Dir = dir
	cmd.Stderr = &testWriter{t}
	out, runErr := cmd.Output()
	var res clientResult
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("client output %q: %v (exit: %v)", out, err, runErr)
	}
	return res, runErr
}

// testWriter logs what the client writes to stderr.
type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
