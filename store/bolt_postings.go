package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// A posting list is stored in chunks: key list prefix + the chunk's first
// id, value the chunk's ids in ascending order (each a uvarint length and
// its bytes). Every id of a chunk is at least its key and below the next
// chunk's key. A flush rewrites the few chunks its runs fall in (the last
// ones, mostly) instead of putting and deleting a key per run and list:
// bbolt moves a node's later entries at each insert or delete, which made
// key-per-run lists cost three times the rest of a flush. Lists of
// message ids are the exception (see isKeyed): one key per run, each a
// chunk of one id, which readers walk as any other list.

// chunkIDs is how many ids a chunk holds at most (a chunk of ULIDs takes
// ~3.5 KB; removing a run from a list rewrites one chunk).
const chunkIDs = 128

func appendIDs(b []byte, ids [][]byte) []byte {
	for _, id := range ids {
		b = binary.AppendUvarint(b, uint64(len(id)))
		b = append(b, id...)
	}
	return b
}

// decodeIDs reads a chunk's ids; they alias v.
func decodeIDs(v []byte) ([][]byte, error) {
	var ids [][]byte
	for len(v) > 0 {
		n, w := binary.Uvarint(v)
		if w <= 0 || uint64(len(v)-w) < n {
			return nil, errors.New("corrupt posting chunk")
		}
		ids, v = append(ids, v[w:w+int(n)]), v[w+int(n):]
	}
	return ids, nil
}

// splitPostingKey splits a posting key (or a chunk's key) into its list
// prefix and id.
func splitPostingKey(k []byte) (prefix, id []byte) {
	n, w := binary.Uvarint(k[1:])
	end := 1 + w + int(n)
	return k[:end], k[end:]
}

// listChanges is the ids to add to and remove from one chunked posting
// list in a transaction.
type listChanges struct {
	prefix     []byte
	adds, dels [][]byte
}

// applyLists writes the changes to each list, in the order of their
// prefixes (the bucket's key order). A flush adds its runs in id order, so
// a list's ids mostly arrive sorted: they are sorted only when not. The
// keys and chunks put are appended to buf (see runTx), which it returns.
func applyLists(b *bolt.Bucket, lists map[string]*listChanges, buf []byte) ([]byte, error) {
	order := make([]*listChanges, 0, len(lists))
	for _, l := range lists {
		order = append(order, l)
	}
	slices.SortFunc(order, func(x, y *listChanges) int { return bytes.Compare(x.prefix, y.prefix) })
	for _, l := range order {
		sortIDs(l.adds)
		sortIDs(l.dels)
		var err error
		if buf, err = updateList(b, l.prefix, l.adds, l.dels, buf); err != nil {
			return buf, err
		}
	}
	return buf, nil
}

func sortIDs(ids [][]byte) {
	if !slices.IsSortedFunc(ids, bytes.Compare) {
		slices.SortFunc(ids, bytes.Compare)
	}
}

// updateList adds and removes ids (each sorted) on the list under prefix,
// rewriting each chunk they fall in once. The keys and chunks it puts are
// appended to buf, which bbolt needs until the transaction ends; it
// returns buf.
func updateList(b *bolt.Bucket, prefix []byte, adds, dels [][]byte, buf []byte) ([]byte, error) {
	c := b.Cursor()
	for len(adds) > 0 || len(dels) > 0 {
		next := firstOf(adds, dels)
		key, val, upper := chunkFor(c, prefix, next)
		na, nd := len(adds), len(dels)
		if upper != nil {
			na = countBelow(adds, upper)
			nd = countBelow(dels, upper)
		}
		if na == 0 && nd == 0 {
			// chunkFor missed next's chunk: stop rather than loop.
			return buf, fmt.Errorf("posting list %q: no chunk found for %q", prefix, next)
		}
		var ids [][]byte
		if key != nil {
			var err error
			if ids, err = decodeIDs(bytes.Clone(val)); err != nil {
				return buf, err
			}
		}
		ids = mergeIDs(ids, adds[:na], dels[:nd])
		adds, dels = adds[na:], dels[nd:]
		// The chunk keeps its key when its first id stays (ids added at
		// the end, the usual case): the first piece's Put replaces it.
		if key != nil && (len(ids) == 0 || !bytes.Equal(key[len(prefix):], ids[0])) {
			if err := b.Delete(bytes.Clone(key)); err != nil {
				return buf, err
			}
		}
		for piece := range slices.Chunk(ids, chunkIDs) {
			start := len(buf)
			buf = append(append(buf, prefix...), piece[0]...)
			k := buf[start:len(buf):len(buf)]
			start = len(buf)
			buf = appendIDs(buf, piece)
			if err := b.Put(k, buf[start:len(buf):len(buf)]); err != nil {
				return buf, err
			}
		}
	}
	return buf, nil
}

func firstOf(a, b [][]byte) []byte {
	switch {
	case len(a) == 0:
		return b[0]
	case len(b) == 0 || bytes.Compare(a[0], b[0]) < 0:
		return a[0]
	}
	return b[0]
}

func countBelow(ids [][]byte, upper []byte) int {
	n, _ := slices.BinarySearchFunc(ids, upper, bytes.Compare)
	return n
}

// chunkFor finds the chunk of the list under prefix that id falls in: the
// one with the greatest key at most id, or the first when id is below it;
// nil when the list is empty. upper is the next chunk's first id (nil for
// the last chunk).
func chunkFor(c *bolt.Cursor, prefix, id []byte) (key, val, upper []byte) {
	key, val = floorKey(c, prefix, id)
	if key == nil {
		if key, val = c.Seek(prefix); key == nil || !bytes.HasPrefix(key, prefix) {
			return nil, nil, nil
		}
	}
	if k, _ := c.Next(); k != nil && bytes.HasPrefix(k, prefix) {
		upper = k[len(prefix):]
	}
	return key, val, upper
}

// floorKey positions c on the greatest key with prefix that is at most
// prefix+id; nil when there is none.
func floorKey(c *bolt.Cursor, prefix, id []byte) ([]byte, []byte) {
	seek := append(prefix[:len(prefix):len(prefix)], id...)
	k, v := c.Seek(seek)
	if k != nil && bytes.Equal(k, seek) {
		return k, v
	}
	if k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	if k != nil && bytes.HasPrefix(k, prefix) {
		return k, v
	}
	return floorKeyForward(c, prefix, seek)
}

// floorKeyForward is floorKey walking forward from prefix's first key. In
// a write transaction bbolt's Prev and Last return nil on reaching a leaf
// page that deletes earlier in the transaction emptied, where Next skips
// such pages: stepping back found nothing, so it is checked forward (one
// more seek, for a list with no key at most seek).
func floorKeyForward(c *bolt.Cursor, prefix, seek []byte) ([]byte, []byte) {
	var last []byte
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && bytes.Compare(k, seek) <= 0; k, _ = c.Next() {
		last = k
	}
	if last == nil {
		return nil, nil
	}
	return c.Seek(bytes.Clone(last))
}

// mergeIDs returns ids (sorted) with adds inserted and dels removed (both
// sorted). The ids come out in order, so dels is walked along with them
// (k), not searched for each.
func mergeIDs(ids, adds, dels [][]byte) [][]byte {
	out := make([][]byte, 0, len(ids)+len(adds))
	i, j, k := 0, 0, 0
	for i < len(ids) || j < len(adds) {
		var next []byte
		switch {
		case j == len(adds) || (i < len(ids) && bytes.Compare(ids[i], adds[j]) < 0):
			next, i = ids[i], i+1
		case i < len(ids) && bytes.Equal(ids[i], adds[j]):
			next, i, j = ids[i], i+1, j+1
		default:
			next, j = adds[j], j+1
		}
		for k < len(dels) && bytes.Compare(dels[k], next) < 0 {
			k++
		}
		if k == len(dels) || !bytes.Equal(dels[k], next) {
			out = append(out, next)
		}
	}
	return out
}

// chunkCursor walks one posting list's ids from newest to oldest.
type chunkCursor struct {
	c      *bolt.Cursor
	prefix []byte
	key    []byte   // the chunk decoded in ids
	ids    [][]byte // valid until the transaction ends
}

// below returns the newest id on the list that is less than id (at most id
// when inclusive); nil id means no bound. It returns nil when there is none.
func (l *chunkCursor) below(id []byte, inclusive bool) []byte {
	var k, v []byte
	if id == nil {
		k, v = l.lastChunk()
	} else {
		k, v = floorKey(l.c, l.prefix, id)
	}
	for k != nil {
		if !bytes.Equal(k, l.key) {
			ids, err := decodeIDs(v)
			if err != nil {
				return nil // a corrupt chunk ends the list
			}
			l.key, l.ids = k, ids
		}
		n := len(l.ids)
		if id != nil {
			var found bool
			n, found = slices.BinarySearchFunc(l.ids, id, bytes.Compare)
			if found && inclusive {
				return l.ids[n]
			}
		}
		if n > 0 {
			return l.ids[n-1]
		}
		// Every id here is above the bound: the previous chunk's last.
		l.c.Seek(k)
		if k, v = l.c.Prev(); k != nil && !bytes.HasPrefix(k, l.prefix) {
			k = nil
		}
	}
	return nil
}

// lastChunk positions on the list's last chunk.
func (l *chunkCursor) lastChunk() ([]byte, []byte) {
	var k, v []byte
	if end := successor(l.prefix); end == nil {
		k, v = l.c.Last()
	} else if k, _ = l.c.Seek(end); k == nil {
		k, v = l.c.Last()
	} else {
		k, v = l.c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, l.prefix) {
		return nil, nil
	}
	return k, v
}
