package store

import (
	"bytes"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// sinceSlack is how far a run's StartedAt may lag behind a newer run id's:
// a query with Since stops at the first run (newest first) that started
// more than this before Since. The agent takes a run's id and StartedAt
// together, so they disagree by microseconds.
const sinceSlack = time.Minute

// runCandidates returns the ids of stored runs that pass f's indexed
// fields, newest first, below f.Before. With none set it walks the index.
// Otherwise it reads the index entries of the tail (the runs above the
// posted mark, see postingTail) and returns those that match, then walks
// the posting lists: a run below the mark is on every list of f's set
// fields. It returns an id's index entry when it read it (nil otherwise).
// Both are valid until tx ends.
func runCandidates(b runBuckets, f RunFilter) func() (id, entry []byte) {
	var before []byte
	if f.Before != "" {
		before = []byte(f.Before)
	}
	wanted := filterPostings(f)
	index := &listCursor{c: b.index.Cursor()}
	if len(wanted) == 0 {
		return func() ([]byte, []byte) {
			var entry []byte
			before, entry = index.below(before, false)
			return before, entry
		}
	}
	posted := b.meta.Get(metaPosted)
	inTail := true
	lists := make([]*chunkCursor, len(wanted))
	for i, p := range wanted {
		lists[i] = &chunkCursor{c: b.postings.Cursor(), prefix: appendPostingPrefix(nil, p)}
	}
	done := false
	return func() ([]byte, []byte) {
		for inTail {
			id, entry := index.below(before, false)
			if id == nil || bytes.Compare(id, posted) <= 0 {
				inTail = false
				break
			}
			before = id
			if entryMatches(entry, wanted) {
				return id, entry
			}
		}
		if done {
			return nil, nil
		}
		cand := lists[0].below(before, false)
		// Zig-zag: seek each other list to the candidate; a list whose
		// newest id at or below it is older makes that the candidate, until
		// every list holds it (a match) or one list ends (no more matches).
		for agreed, i := 1, 1; cand != nil && agreed < len(lists); i++ {
			got := lists[i%len(lists)].below(cand, true)
			if bytes.Equal(got, cand) {
				agreed++
			} else {
				cand, agreed = got, 1
			}
		}
		if cand == nil {
			done = true
		}
		before = cand
		return cand, nil
	}
}

// listCursor walks one posting list (the keys under prefix; the whole
// bucket for an empty prefix) from newest to oldest id.
type listCursor struct {
	c      *bolt.Cursor
	prefix []byte
	// at is the last id below returned: the cursor sits on it.
	at []byte
}

// below returns the newest id on the list that is less than id (at most id
// when inclusive), and its value; nil id means no bound. It returns nil
// when there is none.
func (l *listCursor) below(id []byte, inclusive bool) ([]byte, []byte) {
	var k, v []byte
	switch {
	case id == nil:
		k, v = l.last()
	case !inclusive && l.at != nil && bytes.Equal(id, l.at):
		k, v = l.c.Prev() // the cursor is on id: step back, no seek
	default:
		k, v = l.seekBelow(id, inclusive)
	}
	if k == nil || !bytes.HasPrefix(k, l.prefix) {
		l.at = nil
		return nil, nil
	}
	l.at = k[len(l.prefix):]
	return l.at, v
}

func (l *listCursor) seekBelow(id []byte, inclusive bool) ([]byte, []byte) {
	seek := append(l.prefix[:len(l.prefix):len(l.prefix)], id...)
	k, v := l.c.Seek(seek)
	if k == nil {
		return l.c.Last()
	}
	if !inclusive || !bytes.Equal(k, seek) {
		return l.c.Prev()
	}
	return k, v
}

// last positions on the list's last key.
func (l *listCursor) last() ([]byte, []byte) {
	end := successor(l.prefix)
	if end == nil {
		return l.c.Last()
	}
	if k, _ := l.c.Seek(end); k == nil {
		return l.c.Last()
	}
	return l.c.Prev()
}

// successor is the smallest key greater than every key starting with p;
// nil when there is none (p empty or all 0xff).
func successor(p []byte) []byte {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] < 0xff {
			s := append([]byte(nil), p[:i+1]...)
			s[i]++
			return s
		}
	}
	return nil
}

// storedRuns appends to out up to limit stored runs that match f, newest
// first, skipping the ids in skip (their buffered version is newer). It
// decodes only runs on every posting list of f; Since stops the walk.
// examined counts the candidates looked at.
func storedRuns(tx *bolt.Tx, f RunFilter, limit int, skip map[string]struct{}, out []Run) ([]Run, int, error) {
	next := genCandidates(readGens(tx), f)
	examined := 0
	for found := 0; found < limit; {
		g, id, entry := next()
		if id == nil {
			break
		}
		runs, index := g.runs, g.index
		examined++
		if _, ok := skip[string(id)]; ok {
			continue
		}
		if !f.Since.IsZero() {
			if entry == nil {
				entry = index.Get(id)
			}
			started, err := startedAtOf(entry)
			if err != nil {
				return out, examined, fmt.Errorf("run %s: %w", id, err)
			}
			if started.Before(f.Since.Add(-sinceSlack)) {
				break // every older id started earlier still
			}
			if started.Before(f.Since) {
				continue
			}
		}
		raw := runs.Get(id)
		if raw == nil {
			continue
		}
		r, err := decodeRun(raw)
		if err != nil {
			return out, examined, err
		}
		if f.Matches(r) {
			out = append(out, r)
			found++
		}
	}
	return out, examined, nil
}

// genWalk is runCandidates on one generation, with the candidate it
// returned last when not yet taken.
type genWalk struct {
	b         runBuckets
	next      func() (id, entry []byte)
	newest    []byte // the generation's highest id
	id, entry []byte // the head: the next candidate, when peeked
	peeked    bool
	ended     bool
}

// genCandidates merges the candidates of each generation (gens newest
// first) newest first, returning each with its generation's buckets. A
// generation's ids mostly lie below the next one's, so a walk is read only
// when its newest id may beat the best head found.
func genCandidates(gens []runBuckets, f RunFilter) func() (runBuckets, []byte, []byte) {
	walks := make([]*genWalk, 0, len(gens))
	for _, b := range gens {
		newest, _ := b.index.Cursor().Last()
		if newest != nil {
			walks = append(walks, &genWalk{b: b, next: runCandidates(b, f), newest: newest})
		}
	}
	return func() (runBuckets, []byte, []byte) {
		var best *genWalk
		for _, w := range walks {
			if w.ended || (!w.peeked && best != nil && bytes.Compare(w.newest, best.id) < 0) {
				continue
			}
			if !w.peeked {
				w.id, w.entry = w.next()
				w.peeked, w.ended = true, w.id == nil
				if w.ended {
					continue
				}
			}
			if best == nil || bytes.Compare(w.id, best.id) > 0 {
				best = w
			}
		}
		if best == nil {
			return runBuckets{}, nil, nil
		}
		best.peeked = false
		return best.b, best.id, best.entry
	}
}
