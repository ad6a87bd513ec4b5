package subproc

import (
	"os/exec"
	"syscall"
)

// dieWithParent has Linux kill cmd's process when the thread that starts
// it ends.
func dieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
