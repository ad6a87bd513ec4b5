package store

import bolt "go.etcd.io/bbolt"

// applyPostings writes posting additions and deletions given as keys (list
// prefix + id), list by list.
func applyPostings(b *bolt.Bucket, adds, dels [][]byte) error {
	lists := map[string]*listChanges{}
	list := func(k []byte) *listChanges {
		prefix, _ := splitPostingKey(k)
		l, ok := lists[string(prefix)]
		if !ok {
			l = &listChanges{prefix: prefix}
			lists[string(prefix)] = l
		}
		return l
	}
	for _, k := range adds {
		l := list(k)
		l.adds = append(l.adds, k[len(l.prefix):])
	}
	for _, k := range dels {
		l := list(k)
		l.dels = append(l.dels, k[len(l.prefix):])
	}
	_, err := applyLists(b, lists, nil)
	return err
}
