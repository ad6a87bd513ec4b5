package subproc_test

import (
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/internal/subproc"
)

// A child outlives a goroutine that calls Start and then ends locked to its
// thread, which ends the thread: were the child started from that thread,
// Linux would kill it then (Pdeathsig).
func TestChildOutlivesTheThreadOfItsCaller(t *testing.T) {
	exited := make(chan error, 1)
	var cmd *exec.Cmd
	onEndingThread(t, func() {
		cmd = exec.Command("sleep", "30")
		if err := subproc.Start(cmd, func(err error) { exited <- err }); err != nil {
			t.Error(err)
		}
	})
	if cmd.Process == nil {
		return
	}
	defer cmd.Process.Kill()
	select {
	case err := <-exited:
		t.Fatalf("the child ended with its caller's thread: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
}

// onEndingThread runs f on a goroutine locked to a thread that ends with
// it. The runtime does not end the main thread: a goroutine that finds
// itself there holds it until f has run, so that the next one gets another.
func onEndingThread(t *testing.T, f func()) {
	release := make(chan struct{})
	defer close(release)
	for range 100 {
		ran := make(chan bool)
		go func() {
			runtime.LockOSThread() // never unlocked but on the main thread: the thread ends with the goroutine
			if syscall.Gettid() == syscall.Getpid() {
				ran <- false
				<-release
				runtime.UnlockOSThread()
				return
			}
			f()
			ran <- true
		}()
		if <-ran {
			time.Sleep(100 * time.Millisecond) // let the thread end
			return
		}
	}
	t.Fatal("no goroutine got a thread other than the main one")
}

// exited is told cmd.Wait's error; a child that cannot start is an error
// of Start, and exited is not called.
func TestExitedAndStartErrors(t *testing.T) {
	exited := make(chan error, 1)
	if err := subproc.Start(exec.Command("sh", "-c", "exit 3"), func(err error) { exited <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err == nil || err.Error() != "exit status 3" {
		t.Fatalf("exited with %v, want exit status 3", err)
	}
	err := subproc.Start(exec.Command("/nonexistent/program"), func(error) { t.Error("exited called") })
	if err == nil {
		t.Fatal("Start of a missing program: no error")
	}
}
