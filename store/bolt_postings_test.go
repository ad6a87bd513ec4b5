package store

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// Posting lists kept in chunks hold exactly the ids added and not removed,
// whatever the order (appends, inserts below the newest, removals
// anywhere, several lists side by side), and a walk newest first from any
// bound finds them.
func TestPostingChunksMatchAModel(t *testing.T) {
	t.Parallel()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "p.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lists := []posting{{fieldStatus, "failed"}, {fieldStatus, "succeeded"}, {fieldOperation, "op"}}
	model := make([]map[string]bool, len(lists))
	for i := range model {
		model[i] = map[string]bool{}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 60 {
		var adds, dels [][]byte
		for range rng.IntN(400) {
			l := rng.IntN(len(lists))
			id := fmt.Sprintf("id-%05d", rng.IntN(round*100+300)) // mostly new, some older
			key := append(appendPostingPrefix(nil, lists[l]), id...)
			if model[l][id] && rng.IntN(2) == 0 {
				dels = append(dels, key)
				delete(model[l], id)
			} else if !model[l][id] && !slices.ContainsFunc(dels, func(k []byte) bool { return bytes.Equal(k, key) }) {
				adds = append(adds, key)
				model[l][id] = true
			}
		}
		slices.SortFunc(adds, bytes.Compare)
		slices.SortFunc(dels, bytes.Compare)
		if err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(bucketRunPostings)
			if err != nil {
				return err
			}
			return applyPostings(b, adds, dels)
		}); err != nil {
			t.Fatal(err)
		}
	}
	db.View(func(tx *bolt.Tx) error {
		for l, p := range lists {
			var want []string
			for id := range model[l] {
				want = append(want, id)
			}
			slices.Sort(want)
			slices.Reverse(want)
			c := &chunkCursor{c: tx.Bucket(bucketRunPostings).Cursor(), prefix: appendPostingPrefix(nil, p)}
			var got []string
			for id := c.below(nil, false); id != nil; id = c.below(id, false) {
				got = append(got, string(id))
			}
			if !slices.Equal(got, want) {
				t.Errorf("list %v: walked %d ids, want %d", p, len(got), len(want))
			}
			// Seeking at an id on the list finds it (inclusive) or the next older.
			for i := 0; i+1 < len(want); i += 37 {
				if got := c.below([]byte(want[i]), true); string(got) != want[i] {
					t.Errorf("list %v: at most %s gives %s", p, want[i], got)
				}
				if got := c.below([]byte(want[i]), false); string(got) != want[i+1] {
					t.Errorf("list %v: below %s gives %s, want %s", p, want[i], got, want[i+1])
				}
			}
		}
		return nil
	})
}

// mergeIDs inserts adds and removes dels, each sorted, wherever they fall
// among the ids; a removal of an id not there, or of one being added,
// leaves it out.
func TestMergeIDs(t *testing.T) {
	t.Parallel()
	ids := func(s string) [][]byte {
		var out [][]byte
		for _, c := range s {
			out = append(out, []byte{byte(c)})
		}
		return out
	}
	cases := []struct{ ids, adds, dels, want string }{
		{"", "", "", ""},
		{"bdf", "ace", "", "abcdef"},
		{"abcdef", "", "af", "bcde"},
		{"bdf", "ce", "abdg", "cef"},
		{"bd", "bd", "", "bd"},
		{"", "abc", "b", "ac"},
		{"ace", "", "bdf", "ace"},
	}
	for _, c := range cases {
		got := mergeIDs(ids(c.ids), ids(c.adds), ids(c.dels))
		if s := string(bytes.Join(got, nil)); s != c.want {
			t.Errorf("mergeIDs(%q, +%q, -%q) = %q, want %q", c.ids, c.adds, c.dels, s, c.want)
		}
	}
}
