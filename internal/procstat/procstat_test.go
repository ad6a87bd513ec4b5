package procstat

import (
	"os"
	"runtime"
	"testing"
)

// This process's own figures read back: CPU time and memory are positive,
// the peak is at least the current resident set, and it is split into
// anonymous and file pages.
func TestReadsThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads Linux's /proc")
	}
	x := 0
	for i := range 50_000_000 { // some CPU time to read back
		x += i
	}
	_ = x
	cpu, err := CPU(os.Getpid())
	if err != nil || cpu <= 0 {
		t.Fatalf("CPU = %v, %v; want a positive time", cpu, err)
	}
	m, err := ReadMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.VmRSS <= 0 || m.VmHWM < m.VmRSS || m.RssAnon <= 0 || m.RssAnon+m.RssFile > m.VmRSS+4096 {
		t.Fatalf("memory %+v: want VmRSS > 0, VmHWM >= VmRSS, RssAnon > 0, RssAnon+RssFile <= VmRSS", m)
	}
}

func TestAMissingProcessIsAnError(t *testing.T) {
	if _, err := CPU(-1); err == nil {
		t.Error("CPU of pid -1: no error")
	}
	if _, err := ReadMemory(-1); err == nil {
		t.Error("ReadMemory of pid -1: no error")
	}
}
