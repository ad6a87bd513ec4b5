package store

import (
	"slices"
	"testing"
)

// checkFiltersAgainst fails t when a query of s by any of filters (with no
// limit) does not answer the runs of model it matches, newest first.
// model is in the order the runs were written; when says at which step of
// the test the check runs.
func checkFiltersAgainst(t *testing.T, when string, s Store, model []Run, filters []RunFilter) {
	t.Helper()
	for _, f := range filters {
		f.Limit = 1 << 20
		var want []string
		for _, r := range slices.Backward(model) {
			if f.Matches(r) {
				want = append(want, r.ID)
			}
		}
		runs, err := s.Runs(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]string, 0, len(runs))
		for _, r := range runs {
			got = append(got, r.ID)
		}
		if !slices.Equal(got, want) {
			i := 0
			for i < min(len(got), len(want)) && got[i] == want[i] {
				i++
			}
			t.Errorf("%s, %+v: %d runs, want %d; they differ from position %d", when, f, len(got), len(want), i)
		}
	}
}
