package agent

import (
	"os"
	"runtime/debug"
)

// TuneGC sets the process's garbage collector as an agent wants it: runs
// allocate many short-lived objects and the heap is small, so it collects
// less often (GOGC=400), with a soft limit of three quarters of
// memoryLimit (the heap at which the watchdog stops scripts; 0 means its
// default, 1 GiB) so that the GC works harder before a heap of many waiting
// runs, each holding a runtime (~0.7 MiB), takes five times its live size —
// unless the GOGC or GOMEMLIMIT environment variables say otherwise. With
// 200 runs awaiting a fetch (bench/iobench) a limit of half gave 0.55 GB RSS
// at 1.6× the CPU per request, three quarters 0.77 GB at 1.1×, none 1.2 GB. `opsrunner serve` calls
// it, and so do the benchmarks, so that they measure what serve runs.
func TuneGC(memoryLimit uint64) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if memoryLimit == 0 {
		memoryLimit = 1 << 30
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(memoryLimit / 4 * 3))
	}
}
