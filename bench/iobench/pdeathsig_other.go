//go:build !linux

package main

import "os/exec"

// dieWithParent does nothing where the kernel cannot tie a child's life to
// its parent's; the children are stopped at exit as usual.
func dieWithParent(*exec.Cmd) {}
