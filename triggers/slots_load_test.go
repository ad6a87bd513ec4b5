package triggers

import "testing"

func TestLoadCountsWorkersAndRunsInProgress(t *testing.T) {
	for _, c := range []struct {
		busy, workers, inflight, max int
		want                         float64
	}{
		{0, 2, 0, 1000, 0},
		{2, 2, 2, 1000, 1},     // CPU-bound: every worker busy
		{0, 2, 500, 1000, 0.5}, // I/O-bound: half the runs in progress allowed
		{1, 2, 900, 1000, 0.9}, // the larger share counts
		{1, 2, 0, 0, 0.5},      // an agent reporting no max_inflight counts by workers
		{0, 0, 0, 0, 1},        // no capacity at all: full
	} {
		if got := Load(c.busy, c.workers, c.inflight, c.max); got != c.want {
			t.Errorf("Load(%d/%d workers, %d/%d runs) = %v, want %v", c.busy, c.workers, c.inflight, c.max, got, c.want)
		}
	}
}
