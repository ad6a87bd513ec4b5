package store

import bolt "go.etcd.io/bbolt"

// Examined reports how many stored runs the store's queries have looked
// at so far (candidates from the index or the posting lists, and runs of
// the tail whose index entry matched; not the tail's other entries).
func (s *Bolt) Examined() int64 { return s.examined.Load() }

// CountPostings opens the store file at path read-only and counts the ids
// on its posting lists.
func CountPostings(path string) (int, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	n := 0
	err = db.View(func(tx *bolt.Tx) error {
		for _, g := range readGens(tx) {
			if err := g.postings.ForEach(func(k, v []byte) error {
				ids, err := decodeIDs(v)
				n += len(ids)
				return err
			}); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// TrimSlack is how far past MaxRuns a write lets the Redis store go.
var TrimSlack = trimSlack

// GenRuns is how far past MaxRuns a flush lets the Bolt store go: one
// generation.
var GenRuns = genRuns

// Crash closes the store as a kill -9 leaves it: the writers stop and
// nothing more is written (runs still buffered are lost, runs above the
// posted mark stay off their posting lists).
func (s *Bolt) Crash() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	s.writers.Wait()
	s.hub.close()
	if s.log != nil {
		s.log.close()
	}
	return s.db.Close()
}

// CheckFiltersAgainst fails t when a query by any of filters does not
// answer the runs of model it matches, newest first.
var CheckFiltersAgainst = checkFiltersAgainst
