package main_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/internal/testenv"
)

// binary is the opsrunner binary built once for these tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "opsrunner-cli")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "opsrunner")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build opsrunner: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// serve starts `opsrunner serve` as a child process on free ports and
// returns its URL and the process.
func serve(t *testing.T, extraEnv ...string) (string, *exec.Cmd, *bytes.Buffer) {
	t.Helper()
	httpPort, _ := testenv.FreePort()
	brokerPort, _ := testenv.FreePort()
	url := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	cmd := exec.Command(binary, "serve")
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("OPSRUNNER_HTTP_ADDR=127.0.0.1:%d", httpPort),
		fmt.Sprintf("OPSRUNNER_EMBEDDED_BROKER_ADDR=127.0.0.1:%d", brokerPort),
		"OPSRUNNER_DATA_DIR="+t.TempDir(),
		"OPSRUNNER_AGENT_ID=cli-agent",
	)
	cmd.Env = append(cmd.Env, extraEnv...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent did not answer /healthz: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return url, cmd, &logs
}

// cli runs the binary against server and returns its output and exit code.
func cli(t *testing.T, server string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "OPSRUNNER_SERVER="+server)
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return string(out), code
}

func TestCLIEndToEnd(t *testing.T) {
	url, agent, logs := serve(t)

	out, code := cli(t, url, "deploy", "samples/hello")
	if code != 0 || !strings.Contains(out, "deployed hello version 1") {
		t.Fatalf("deploy: %d %s", code, out)
	}
	out, code = cli(t, url, "invoke", "hello/hello", "--data", `{"name":"Ada"}`)
	if code != 0 || !strings.Contains(out, "hello, Ada") {
		t.Fatalf("invoke: %d %s", code, out)
	}
	out, code = cli(t, url, "invoke", "hello/hello", "--async")
	if code != 0 || !strings.Contains(out, "queued run") {
		t.Fatalf("invoke --async: %d %s", code, out)
	}
	out, code = cli(t, url, "deploy", "samples/orders")
	if code != 0 {
		t.Fatalf("deploy orders: %d %s", code, out)
	}
	out, code = cli(t, url, "invoke", "orders/orders", "--data", `{"id":"A-1","customer":"Ada","items":[{"sku":"x","qty":2,"price":5}]}`)
	if code != 0 || !strings.Contains(out, "A-1") {
		t.Fatalf("invoke orders: %d %s", code, out)
	}
	out, code = cli(t, url, "invoke", "orders/orders", "--data", `{}`)
	if code == 0 || !strings.Contains(out, "run ") {
		t.Fatalf("a failing invoke must exit non-zero and name the run: %d %s", code, out)
	}
	out, code = cli(t, url, "runs")
	if code != 0 || !strings.Contains(out, "hello") || !strings.Contains(out, "succeeded") || !strings.Contains(out, "failed") {
		t.Fatalf("runs: %d %s", code, out)
	}
	out, code = cli(t, url, "invoke", "nope/nope")
	if code == 0 || !strings.Contains(out, "not_found") {
		t.Fatalf("unknown webhook: %d %s", code, out)
	}
	out, code = cli(t, "http://127.0.0.1:1", "runs")
	if code == 0 || !strings.Contains(out, "cannot reach the agent") {
		t.Fatalf("unreachable agent: %d %s", code, out)
	}
	out, code = cli(t, url, "version")
	if code != 0 || !strings.HasPrefix(out, "opsrunner ") {
		t.Fatalf("version: %d %s", code, out)
	}
	out, code = cli(t, url, "deploy", "--help")
	if code != 0 || !strings.Contains(out, "opsrunner deploy samples/hello") {
		t.Fatalf("help: %d %s", code, out)
	}

	// SIGTERM: a graceful shutdown that exits 0.
	if err := agent.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- agent.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("agent exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("agent did not stop after SIGTERM\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "opsrunner listening") {
		t.Errorf("no startup line saying where it listens:\n%s", logs.String())
	}
}
