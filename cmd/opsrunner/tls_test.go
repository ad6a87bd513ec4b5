package main_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/internal/testenv"
)

// An agent configured by its environment alone listens on a TLS broker that
// requires a client certificate (RabbitMQ's STOMP TLS listener), and
// `opsrunner send` reaches that broker the same way; without the client
// certificate, send fails with the broker's reason.
func TestServeAndSendOverMutualTLS(t *testing.T) {
	b := testenv.RabbitMQ(t)
	brokerEnv := []string{
		fmt.Sprintf("OPSRUNNER_BROKER_URL=stomp+ssl://%s:%s@%s", b.Login, b.Passcode, b.TLSAddr),
		"OPSRUNNER_BROKER_TLS_CA_FILE=" + b.TLS.CAFile,
		"OPSRUNNER_BROKER_TLS_CERT_FILE=" + b.TLS.ClientCertFile,
		"OPSRUNNER_BROKER_TLS_KEY_FILE=" + b.TLS.ClientKey,
	}
	url, _, logs := serve(t, brokerEnv...)

	queue := fmt.Sprintf("/queue/clitls%d", rand.Uint32())
	dir := t.TempDir()
	files := map[string]string{
		"opsrunner.yaml": "project: tls\noperations:\n  - name: op\n    script: op.js\nlisteners:\n  - name: in\n    destination: " + queue + "\n    operations: [op]\n",
		"op.js":          "function handle(event) { return {n: event.body.n}; }\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, code := cli(t, url, "deploy", dir); code != 0 {
		t.Fatalf("deploy: %d %s", code, out)
	}
	waitHTTP(t, url+"/api/v1/listeners?q=tls", `"status":"on"`, logs)

	send := func(env ...string) (string, error) {
		cmd := exec.Command(binary, "send", queue, "--body", `{"n": 7}`, "--content-type", "application/json", "--persistent")
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := send(brokerEnv...); err != nil || !strings.Contains(out, "sent 1 message") {
		t.Fatalf("send over TLS: %v %s", err, out)
	}
	waitHTTP(t, url+"/api/v1/runs?status=succeeded", `"outcome":"committed"`, logs)

	out, err := send(brokerEnv[:2]...) // the CA, no client certificate
	if err == nil || !strings.Contains(out, "certificate required") {
		t.Fatalf("send without a client certificate: %v %s", err, out)
	}
}

// waitHTTP waits up to 30 s for GET url to answer a body containing want.
func waitHTTP(t *testing.T, url, want string, logs fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if last = string(body); strings.Contains(last, want) {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("GET %s never contained %s; last answer %s\nagent log:\n%s", url, want, last, logs)
}
