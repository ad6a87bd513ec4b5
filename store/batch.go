package store

import (
	"slices"
	"strings"
)

// runBatch is buffered runs: the latest version of each, in the order of
// their first puts (mostly id order: runs are put as they start). The runs
// are held in a slice indexed by a map rather than as map values: a Run is
// too large for a map to hold inline, so a map of Runs allocated one per
// put. A nil *runBatch is empty.
type runBatch struct {
	runs []Run
	at   map[string]int // run id → index in runs
}

func newRunBatch() *runBatch { return &runBatch{at: map[string]int{}} }

// put adds r, replacing the version of it put before.
func (b *runBatch) put(r Run) {
	if i, ok := b.at[r.ID]; ok {
		b.runs[i] = r
		return
	}
	b.at[r.ID] = len(b.runs)
	b.runs = append(b.runs, r)
}

// get returns the version of run id in b.
func (b *runBatch) get(id string) (Run, bool) {
	if b == nil {
		return Run{}, false
	}
	i, ok := b.at[id]
	if !ok {
		return Run{}, false
	}
	return b.runs[i], true
}

// list returns b's runs, to read only.
func (b *runBatch) list() []Run {
	if b == nil {
		return nil
	}
	return b.runs
}

func (b *runBatch) len() int { return len(b.list()) }

// inIDOrder returns the indexes of b's runs in ascending id order, in
// order's room. They mostly are in it already, so they are sorted only
// when not.
func (b *runBatch) inIDOrder(order []int) []int {
	order = order[:0]
	for i := range b.runs {
		order = append(order, i)
	}
	byID := func(i, j int) int { return strings.Compare(b.runs[i].ID, b.runs[j].ID) }
	if !slices.IsSortedFunc(order, byID) {
		slices.SortFunc(order, byID)
	}
	return order
}

// reset empties b for reuse, keeping its room but none of its runs.
func (b *runBatch) reset() {
	clear(b.runs)
	b.runs = b.runs[:0]
	clear(b.at)
}
