package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/internal/testenv"
)

// demoLine is a process line the demo prints: name, URL, pid.
var demoLine = regexp.MustCompile(`^(\S+)\s+(\S+://\S+)\s+pid (\d+)`)

// TestDemoFormsAClusterAndStopsEverythingOnInterrupt: the demo starts
// Redis, the broker and three agents; the agents form one cluster with
// quorum (GET /api/v1/cluster/members); a SIGINT to the demo ends it
// cleanly and leaves none of its processes running.
func TestDemoFormsAClusterAndStopsEverythingOnInterrupt(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		testenv.Unavailable(t, "redis-server", err)
	}
	bin := t.TempDir()
	for _, b := range []struct{ out, pkg string }{{"opsrunner", "../opsrunner"}, {"clusterdemo", "."}} {
		build := exec.Command("go", "build", "-o", filepath.Join(bin, b.out), b.pkg)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	demo := exec.Command(filepath.Join(bin, "clusterdemo"), "-opsrunner", filepath.Join(bin, "opsrunner"), "-dir", t.TempDir())
	stdout, pw := io.Pipe()
	demo.Stdout, demo.Stderr = pw, os.Stderr
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	procs := map[string]int{} // name → pid
	urls := map[string]string{}
	t.Cleanup(func() { // a failed test leaves nothing behind
		_ = demo.Process.Kill()
		for _, pid := range procs {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	lines := bufio.NewScanner(stdout)
	for len(procs) < 5 && lines.Scan() {
		t.Log(lines.Text())
		if m := demoLine.FindStringSubmatch(lines.Text()); m != nil {
			pid, _ := strconv.Atoi(m[3])
			procs[m[1]], urls[m[1]] = pid, m[2]
		}
	}
	if len(procs) < 5 {
		t.Fatalf("the demo printed %d processes before ending, want redis, broker and 3 agents", len(procs))
	}
	go func() { // keep draining, so the demo never blocks on its output
		for lines.Scan() {
		}
	}()

	members := awaitQuorum(t, urls["agent-1"])
	if len(members.Members) != 3 || !members.Quorum.OK || members.Quorum.Live != 3 {
		t.Fatalf("members = %+v, want 3 live agents with quorum", members)
	}

	if err := demo.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := demo.Wait()
	pw.Close()
	if err != nil {
		t.Fatalf("the demo ended with %v after SIGINT, want a clean exit", err)
	}
	for name, pid := range procs {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) is still there after the demo ended (kill -0: %v)", name, pid, err)
		}
	}
}

// membersView is what the test reads of GET /api/v1/cluster/members.
type membersView struct {
	Quorum struct {
		Live int  `json:"live"`
		OK   bool `json:"ok"`
	} `json:"quorum"`
	Members []struct {
		ID string `json:"id"`
	} `json:"members"`
}

// awaitQuorum polls the agent's members until three agents are live with
// quorum. The bound only keeps a broken demo from hanging the test.
func awaitQuorum(t *testing.T, base string) membersView {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var last string
	for time.Now().Before(deadline) {
		v, err := getMembers(base)
		if err == nil && v.Quorum.OK && len(v.Members) == 3 {
			return v
		}
		last = fmt.Sprintf("%+v, %v", v, err)
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no cluster of 3 with quorum at %s; last: %s", base, last)
	return membersView{}
}

func getMembers(base string) (membersView, error) {
	var v membersView
	resp, err := http.Get(base + "/api/v1/cluster/members")
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return v, fmt.Errorf("status %s", resp.Status)
	}
	return v, json.NewDecoder(resp.Body).Decode(&v)
}
