package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/opsrunner/opsrunner/internal/baseline"
	"github.com/opsrunner/opsrunner/internal/procstat"
	"github.com/opsrunner/opsrunner/internal/subproc"
	"github.com/opsrunner/opsrunner/scripts"
)

// agentProc is an `opsrunner serve` child process of any build, with the
// benchmark's webhook deployed, measured from outside: its CPU time and
// RSS from /proc. It runs in its own process group and dies with this
// program (Pdeathsig). Not safe for concurrent use.
type agentProc struct {
	base string // http://host:port of its API
	dir  string // its data dir, config and log
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
}

// startAgentProc starts bin's agent on free loopback ports with its data in
// a new folder under parent (the system's temporary folder when empty), the
// YAML config cfg (may be empty) and run_durability from
// OPSRUNNER_RUN_DURABILITY as this process has it, waits until it answers
// /healthz and deploys the webhook. The returned URL is the webhook's.
func startAgentProc(bin, parent, cfg string) (*agentProc, string, error) {
	dir, err := os.MkdirTemp(parent, "webhookbench-agent")
	if err != nil {
		return nil, "", err
	}
	httpAddr, err1 := freeAddr()
	brokerAddr, err2 := freeAddr()
	if err := errors.Join(err1, err2, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o600)); err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	cmd := exec.Command(bin, "serve", "--config", filepath.Join(dir, "config.yaml"))
	cmd.Env = append(os.Environ(), "OPSRUNNER_HTTP_ADDR="+httpAddr, "OPSRUNNER_EMBEDDED_BROKER_ADDR="+brokerAddr,
		"OPSRUNNER_DATA_DIR="+filepath.Join(dir, "data"), "OPSRUNNER_AGENT_ID=bench", "OPSRUNNER_LOG_LEVEL=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &agentProc{base: "http://" + httpAddr, dir: dir, cmd: cmd, done: make(chan struct{})}
	if err := subproc.Start(cmd, func(error) { logf.Close(); close(p.done) }); err != nil {
		logf.Close()
		os.RemoveAll(dir)
		return nil, "", fmt.Errorf("start %s: %w", bin, err)
	}
	if err := p.waitHealthy(30 * time.Second); err != nil {
		p.stop()
		return nil, "", err
	}
	if err := deploy(p.base); err != nil {
		p.stop()
		return nil, "", err
	}
	return p, p.base + "/hooks/bench/hook", nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitHealthy polls /healthz every 20 ms until it answers 200, the
// process exits or limit passes.
func (p *agentProc) waitHealthy(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		resp, err := http.Get(p.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			log, _ := os.ReadFile(filepath.Join(p.dir, "agent.log"))
			return fmt.Errorf("agent exited: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent not healthy within %s: %v", limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deploy deploys the benchmark's webhook project to the agent at base.
func deploy(base string) error {
	files := map[string][]byte{
		"opsrunner.yaml": []byte(baseline.WebhookManifest),
		"hook.js":        []byte(baseline.WebhookScript),
	}
	var buf bytes.Buffer
	if err := scripts.WriteBundle(&buf, files); err != nil {
		return err
	}
	req, _ := http.NewRequest(http.MethodPut, base+"/api/v1/projects/bench", &buf)
	req.Header.Set("Content-Type", "application/gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("deploy: %s", resp.Status)
	}
	return nil
}

// cpu is the process's CPU time (user + system) so far; zero where /proc
// cannot be read.
func (p *agentProc) cpu() time.Duration {
	d, _ := procstat.CPU(p.cmd.Process.Pid)
	return d
}

// rss is the process's VmRSS in bytes; zero where /proc cannot be read.
func (p *agentProc) rss() int64 {
	m, _ := procstat.ReadMemory(p.cmd.Process.Pid)
	return m.VmRSS
}

// stop ends the process with SIGTERM (SIGKILL after 10 s) and removes its
// folder. Idempotent.
func (p *agentProc) stop() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	p.cmd = nil
	os.RemoveAll(p.dir)
}
