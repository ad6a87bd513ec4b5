package store

// Examined reports how many stored runs the store's queries have looked
// at so far (candidates from the index or the posting lists).
func (s *Bolt) Examined() int64 { return s.examined.Load() }
