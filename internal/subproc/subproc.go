// Package subproc starts the helper processes of tests, benchmarks and the
// cluster demo (brokers, agents, servers) so that they die with the process
// that started them, and waits for them.
package subproc

import (
	"os/exec"
	"runtime"
)

// Start starts cmd so that it is killed (SIGKILL) when this process dies,
// where the system can (Linux: Pdeathsig), and waits for it on a goroutine
// of its own; exited, when not nil, is called there with cmd.Wait's error
// once it has ended. It returns cmd.Start's error; exited is not called
// then.
//
// Linux sends that signal when the thread that started the child ends, not
// the process (go.dev/issue/27505), and the Go runtime ends a thread whose
// goroutine exits locked to it, as the run store's flusher does (see
// store.backgroundThread). So the child is started, and waited for, on a
// goroutine locked to its thread until the child has ended.
func Start(cmd *exec.Cmd, exited func(waitErr error)) error {
	started := make(chan error, 1)
	go func() { // owner: the child; ends when it has ended
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		dieWithParent(cmd)
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		err := cmd.Wait()
		if exited != nil {
			exited(err)
		}
	}()
	return <-started
}
