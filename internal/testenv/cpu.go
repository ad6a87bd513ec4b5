package testenv

import (
	"syscall"
	"testing"
	"time"
)

// CPUMeter starts measuring the process's CPU time (user and system, all
// its threads: the garbage collector's too); the function it returns
// reports it per iteration of b as cpu-ns/op. On a shared machine it
// varies less than ns/op.
func CPUMeter(b *testing.B) (report func()) {
	start := processCPU(b)
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(processCPU(b)-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
