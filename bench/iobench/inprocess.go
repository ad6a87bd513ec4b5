package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"

	"github.com/opsrunner/opsrunner/agent"
)

// inProcess is an agent running in this process, for -cpuprofile (the
// agent has no profiling endpoint): its CPU time and RSS are this
// process's, the upstream's included.
type inProcess struct {
	stopFn func()
	once   sync.Once
	log    string // the file holding the agent's log
}

func (p *inProcess) pid() int        { return os.Getpid() }
func (p *inProcess) stop()           { p.once.Do(p.stopFn) }
func (p *inProcess) logTail() string { return tail(p.log) }

// startInProcess runs an agent in this process with run durability mode
// and deploys the project calling upstreamURL; it serves until stopped.
func startInProcess(dir, mode, upstreamURL string) (*leg, error) {
	name := "opsrunner (" + mode + ", in-process)"
	logPath := filepath.Join(dir, "agent-inprocess-"+mode+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	agent.TuneGC(0) // as `opsrunner serve` does
	cfg := agent.Defaults()
	cfg.HTTPAddr, cfg.EmbeddedBrokerAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir, cfg.AgentID, cfg.RunDurability = filepath.Join(dir, "agent-inprocess-"+mode), "iobench-"+mode, mode
	a, err := agent.New(cfg, slog.New(slog.NewTextHandler(f, nil)))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	<-a.Started()
	p := &inProcess{log: logPath, stopFn: func() { cancel(); <-done; f.Close() }}
	base := "http://" + a.HTTPAddr()
	if err := deploy(base, upstreamURL); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s: %w\n%s", name, err, p.logTail())
	}
	return &leg{server: p, name: name, url: base + "/hooks/iobench/hook"}, nil
}

// startProfile starts a CPU profile written to path; the returned function
// stops it.
func startProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
