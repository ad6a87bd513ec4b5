package main

import (
	"os"
	"strconv"
	"strings"
)

// clockTick is the unit of /proc CPU times (USER_HZ, 100 on Linux).
const clockTick = 10_000 // µs

// machineCPU reads /proc/stat's aggregate line: busy and total CPU time in
// µs over every core. ok is false where /proc is not Linux's.
func machineCPU() (busy, total float64, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, false
	}
	for i, x := range f[1:] {
		v, err := strconv.ParseFloat(x, 64)
		if err != nil {
			return 0, 0, false
		}
		total += v * clockTick
		if i != 3 && i != 4 { // idle, iowait
			busy += v * clockTick
		}
	}
	return busy, total, true
}

// childrenCPU is the CPU time in µs of this process's descendants that are
// running: the broker under test (its JVM too, below ActiveMQ's shell script).
func childrenCPU() float64 {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	type stat struct {
		ppid int
		cpu  float64
	}
	procs := map[int]stat{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name (field 2) may hold spaces: fields start after ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		utime, _ := strconv.ParseFloat(f[11], 64)
		stime, _ := strconv.ParseFloat(f[12], 64)
		procs[pid] = stat{ppid: ppid, cpu: (utime + stime) * clockTick}
	}
	self := os.Getpid()
	var sum float64
	for pid, s := range procs {
		for p := s.ppid; p > 1; p = procs[p].ppid {
			if p == self {
				sum += procs[pid].cpu
				break
			}
			if _, known := procs[p]; !known {
				break
			}
		}
	}
	return sum
}
