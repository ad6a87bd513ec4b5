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
func runCandidates(tx *bolt.Tx, f RunFilter) func() (id, entry []byte) {
	var before []byte
	if f.Before != "" {
		before = []byte(f.Before)
	}
	wanted := filterPostings(f)
	index := &listCursor{c: tx.Bucket(bucketRunIndex).Cursor()}
	if len(wanted) == 0 {
		return func() ([]byte, []byte) {
			var entry []byte
			before, entry = index.below(before, false)
			return before, entry
		}
	}
	posted := tx.Bucket(bucketRunMeta).Get(metaPosted)
	inTail := true
	lists := make([]*chunkCursor, len(wanted))
	postings := tx.Bucket(bucketRunPostings)
	for i, p := range wanted {
		lists[i] = &chunkCursor{c: postings.Cursor(), prefix: appendPostingPrefix(nil, p)}
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
	runs, index := tx.Bucket(bucketRuns), tx.Bucket(bucketRunIndex)
	next := runCandidates(tx, f)
	examined := 0
	for found := 0; found < limit; {
		id, entry := next()
		if id == nil {
			break
		}
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
