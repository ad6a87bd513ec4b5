package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the child process killed when this one dies, so that
// a benchmark stopped hard leaves no server behind.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
