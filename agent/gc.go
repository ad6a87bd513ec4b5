package agent

import (
	"os"
	"runtime/debug"
)

// TuneGC sets the process's garbage collector as an agent wants it: runs
// allocate many short-lived objects and the heap is small, so it collects
// less often (GOGC=400) — unless the GOGC environment variable says
// otherwise. `opsrunner serve` calls it, and so do the benchmarks, so that
// they measure what serve runs.
func TuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
}
