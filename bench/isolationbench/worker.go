package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/opsrunner/opsrunner/runtime"
	"github.com/opsrunner/opsrunner/store"
)

// A worker is this binary started as `isolationbench -worker RUNTIMES`
// with one end of a socket pair as fd 3 (not a flag, so -h does not list
// it). It answers run requests on the socket until the socket closes.
// Each frame is a 4-byte big-endian length and that much JSON: a request
// one way, its response (same ID) the other, any number in flight.
const workerArg = "-worker"

// request asks a worker for one run of the bench project's hook operation
// (a worker serves one project).
type request struct {
	ID    uint64 `json:"id"`
	RunID string `json:"runId"`
	Event any    `json:"event"`
}

// response is a run's outcome, with what the agent records of it.
type response struct {
	ID     uint64          `json:"id"`
	Status string          `json:"status"`
	JSON   json.RawMessage `json:"json,omitempty"`
	Error  string          `json:"error,omitempty"`
	Logs   []store.LogLine `json:"logs,omitempty"`
	Steps  []store.Step    `json:"steps,omitempty"`
}

// readFrame decodes the next frame into v; io.EOF, unwrapped, means the
// socket closed between frames.
func readFrame(r *bufio.Reader, v any) error {
	var n uint32
	if err := binary.Read(r, binary.BigEndian, &n); err != nil {
		if err == io.EOF {
			return err
		}
		return fmt.Errorf("read frame: %w", err)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return fmt.Errorf("read frame: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode frame: %w", err)
	}
	return nil
}

// frameWriter writes frames from any goroutine. Frames queued while a
// write is under way go out together in the next one, so that under load
// one system call carries many frames rather than one each.
type frameWriter struct {
	w io.Writer

	mu            sync.Mutex
	queued, spare []byte
	writing       bool  // a goroutine is writing; it takes queued too
	err           error // the first write error; frames are dropped after it
}

// write queues v's frame and, unless another goroutine is writing, writes
// everything queued. nil does not promise delivery: a frame left to
// another goroutine's write can still be lost, which the reader sees as
// the socket failing.
func (fw *frameWriter) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode frame: %w", err)
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.queued = binary.BigEndian.AppendUint32(fw.queued, uint32(len(b)))
	fw.queued = append(fw.queued, b...)
	if fw.writing {
		return fw.err
	}
	fw.writing = true
	for len(fw.queued) > 0 && fw.err == nil {
		out := fw.queued
		fw.queued = fw.spare[:0]
		fw.mu.Unlock()
		_, err := fw.w.Write(out)
		fw.mu.Lock()
		fw.spare = out
		if err != nil {
			fw.err = fmt.Errorf("write frame: %w", err)
		}
	}
	fw.queued = fw.queued[:0]
	fw.writing = false
	return fw.err
}

// serveWorker is a worker's life: it answers requests on fd 3 through one
// Engine of runtimes runtimes, from as many long-lived goroutines (as the
// in-process callers are: a goroutine per run would grow its stack every
// run), until the socket closes; it returns once the runs in flight ended.
func serveWorker(runtimes string) error {
	n, err := strconv.Atoi(runtimes)
	if err != nil {
		return fmt.Errorf("runtimes: %w", err)
	}
	f := os.NewFile(3, "socket")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer conn.Close()
	p, err := loadProject()
	if err != nil {
		return err
	}
	e := runtime.New(runtime.Config{Runtimes: n})
	defer e.Close()
	type workerRequest struct { // request, its event's values left raw for the runtime to parse into JS
		ID    uint64
		RunID string
		Event map[string]json.RawMessage
	}
	var (
		w    = &frameWriter{w: conn}
		reqs = make(chan workerRequest)
		wg   sync.WaitGroup
	)
	for range n {
		wg.Go(func() {
			for req := range reqs {
				ev := make(map[string]any, len(req.Event)) // as map[string]any, or the runtime would re-encode it whole
				for k, v := range req.Event {
					ev[k] = v
				}
				res := e.Run(context.Background(), runtime.Invocation{RunID: req.RunID, Project: p, Operation: "hook", Trigger: runtime.TriggerWebhook, Event: ev})
				out := response{ID: req.ID, Status: res.Status, JSON: res.JSON, Logs: res.Logs, Steps: res.Steps}
				if res.Err != nil {
					out.Error = res.Err.Error()
				}
				_ = w.write(out) // fails only once the parent is gone
			}
		})
	}
	defer wg.Wait()
	defer close(reqs)
	for r := bufio.NewReader(conn); ; {
		var req workerRequest
		if err := readFrame(r, &req); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		reqs <- req
	}
}

// worker is this process's end of a worker process. run is
// goroutine-safe; stop ends the worker.
type worker struct {
	cmd  *exec.Cmd
	conn net.Conn
	w    *frameWriter

	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan response

	done    chan struct{} // closed when readLoop ends
	readErr error         // why it ended; read after done
}

// startWorker starts a worker with an Engine of runtimes runtimes; it does
// not wait for it to be ready (its first run does).
func startWorker(runtimes int) (*worker, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("start worker: socketpair: %w", err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "worker"), os.NewFile(uintptr(fds[1]), "parent")
	defer theirs.Close()
	conn, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	cmd := exec.Command(exe, workerArg, strconv.Itoa(runtimes))
	cmd.ExtraFiles = []*os.File{theirs} // fd 3
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("start worker: %w", err)
	}
	w := &worker{cmd: cmd, conn: conn, w: &frameWriter{w: conn}, pending: map[uint64]chan response{}, done: make(chan struct{})}
	go w.readLoop()
	return w, nil
}

func (w *worker) pid() int { return w.cmd.Process.Pid }

// readLoop hands each response to the run waiting for it, until the
// socket fails or closes.
func (w *worker) readLoop() {
	defer close(w.done)
	r := bufio.NewReader(w.conn)
	for {
		var res response
		if err := readFrame(r, &res); err != nil {
			w.readErr = err
			return
		}
		w.mu.Lock()
		ch := w.pending[res.ID]
		delete(w.pending, res.ID)
		w.mu.Unlock()
		if ch != nil {
			ch <- res
		}
	}
}

// run sends one run with event ev and waits for its answer; an error means
// the run failed or the worker is gone.
func (w *worker) run(ev any) error {
	ch := make(chan response, 1)
	w.mu.Lock()
	w.next++
	id := w.next
	w.pending[id] = ch
	w.mu.Unlock()
	if err := w.w.write(request{ID: id, RunID: "bench", Event: ev}); err != nil {
		return fmt.Errorf("worker %d: %w", w.pid(), err)
	}
	select {
	case res := <-ch:
		return checkRun(res.Status, res.JSON, res.Error)
	case <-w.done:
		select {
		case res := <-ch: // answered just before the socket ended
			return checkRun(res.Status, res.JSON, res.Error)
		default:
			return fmt.Errorf("worker %d: socket ended: %w", w.pid(), w.readErr)
		}
	}
}

// stop closes the socket, which ends the worker, and waits for it to exit,
// killing it after 5 s. Call it once, with no run in flight.
func (w *worker) stop() error {
	w.conn.Close()
	<-w.done
	exited := make(chan error, 1)
	go func() { exited <- w.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			return fmt.Errorf("worker %d: %w", w.pid(), err)
		}
		return nil
	case <-time.After(5 * time.Second):
		w.cmd.Process.Kill()
		<-exited
		return errors.New("worker did not exit within 5 s of its socket closing; killed")
	}
}
