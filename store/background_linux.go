//go:build linux

package store

import (
	"runtime"
	"syscall"
)

// backgroundNice is how much nicer than the process the flusher's thread
// is: Linux keeps a nice value per thread. At 10, sharing a core with a
// busy thread of nice 0, it still gets about a tenth of that core (CFS
// weights 110 against 1024), so the run history advances on a machine
// that other work keeps busy.
const backgroundNice = 10

// backgroundThread locks the calling goroutine to its OS thread and makes
// that thread backgroundNice nicer (19 at most, the lowest priority). The
// goroutine must not unlock it: the runtime then ends the thread with the
// goroutine, and no other goroutine ever runs at that priority. Raising a
// nice value needs no privilege (lowering it back would); where the calls
// fail (a sandbox that forbids them), the thread keeps the process's
// priority. A thread that ends signals the children it started with
// Pdeathsig, before the flusher took it: internal/subproc starts them on a
// thread of their own.
func backgroundThread() {
	runtime.LockOSThread()
	tid := syscall.Gettid()
	raw, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
	if err != nil {
		return
	}
	nice := 20 - raw // the system call answers 20 - nice, from 1 to 40
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, tid, min(nice+backgroundNice, 19))
}
