package main

import (
	"fmt"
	"time"

	"github.com/opsrunner/opsrunner/internal/procstat"
)

// memory is a process's resident set now (VmRSS) and at its peak (VmHWM),
// in KiB; zero where /proc cannot be read.
func memory(pid int) (rss, hwm int) {
	m, err := procstat.ReadMemory(pid)
	if err != nil {
		return 0, 0
	}
	return int(m.VmRSS >> 10), int(m.VmHWM >> 10)
}

// cpuTime is the CPU time (user + system) a process has used so far; zero
// where /proc cannot be read.
func cpuTime(pid int) time.Duration {
	d, _ := procstat.CPU(pid)
	return d
}

// mib formats KiB as MiB.
func mib(kib int) string { return fmt.Sprintf("%.0f MiB", float64(kib)/1024) }
