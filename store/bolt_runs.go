package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Run history in a Bolt store, in each generation (see bolt_gens.go):
// bucket runs holds id → run JSON, runindex id → packed runMeta, and
// runpostings one posting list per value of each filter field, under the
// prefix field byte, uvarint length, value, in chunks of ids (message ids:
// one key per run, see isKeyed and bolt_postings.go); a query walks a list
// newest first from its cursor. runmeta holds the count of stored runs
// (kept in the transaction that changes it, so retention needs no scan),
// the index format, and the posted mark: every run with an id up to it is
// on its posting lists; the runs above it (the tail, at most postingTail of
// them, in the newest generation) are only in runs and runindex, and a
// query reads their index entries (see runCandidates).
var (
	bucketRunPostings = []byte("runpostings")
	bucketRunMeta     = []byte("runmeta")

	metaCount  = []byte("count")  // stored runs, 8 bytes big-endian
	metaFormat = []byte("format") // runIndexFormat once the index is complete
	metaPosted = []byte("posted") // the posted mark, a run id; none: ""
	metaTail   = []byte("tail")   // stored runs above the posted mark, 8 bytes big-endian
)

// runIndexFormat is the index layout this code writes: 2 adds outcome,
// trigger and schedule to runindex entries and the posting lists, 3 the
// posted mark, 4 keyed message id lists (see isKeyed). A store of format 2
// gets its mark at open, and one of 2 or 3 its message id lists split; one
// without a format (written before the posting lists) is reindexed.
const runIndexFormat = 4

// postingTail is how many stored runs may wait above the posted mark
// before a write adds them to their posting lists. A webhook's write
// (its run and index entry) then rewrites no page of the posting lists,
// one per list its runs are on; they are rewritten once per postingTail
// runs. A query reads the tail's index entries (a few µs per hundred).
const postingTail = 512

// Filter fields with a posting list, as their key's first byte.
const (
	fieldProject   = 'p'
	fieldOperation = 'o'
	fieldStatus    = 's'
	fieldMessageID = 'm'
	fieldOutcome   = 'c'
	fieldTrigger   = 't'
	fieldSchedule  = 'h'
)

// runMeta is the part of a run that filters and retention look at.
type runMeta struct {
	project, operation, status, messageID string
	startedAt                             time.Time
	outcome, trigger, schedule            string
}

func metaOf(r Run) runMeta {
	return runMeta{project: r.Project, operation: r.Operation, status: r.Status, messageID: r.MessageID,
		startedAt: r.StartedAt, outcome: r.Outcome, trigger: r.Trigger, schedule: r.Schedule}
}

// posting is one field's value: a run is on the list (field, value) when
// value is not empty.
type posting struct {
	field byte
	value string
}

func (m runMeta) postings() [7]posting {
	return [7]posting{{fieldProject, m.project}, {fieldOperation, m.operation}, {fieldStatus, m.status},
		{fieldMessageID, m.messageID}, {fieldOutcome, m.outcome}, {fieldTrigger, m.trigger}, {fieldSchedule, m.schedule}}
}

// filterPostings is the posting lists a query with f intersects.
func filterPostings(f RunFilter) []posting {
	var out []posting
	for _, p := range (runMeta{project: f.Project, operation: f.Operation, status: f.Status, messageID: f.MessageID,
		outcome: f.Outcome, trigger: f.Trigger, schedule: f.Schedule}).postings() {
		if p.value != "" {
			out = append(out, p)
		}
	}
	return out
}

// appendPostingPrefix appends the key prefix of p's list to b.
func appendPostingPrefix(b []byte, p posting) []byte {
	return appendListPrefix(b, p.field, p.value)
}

// appendListPrefix appends the key prefix of the list (field, value) to
// b; value is a string, or bytes read from an index entry.
func appendListPrefix[V ~string | ~[]byte](b []byte, field byte, value V) []byte {
	b = append(b, field)
	b = binary.AppendUvarint(b, uint64(len(value)))
	return append(b, value...)
}

// appendMeta appends r's index entry (read by unpackMeta) to b: format 1's
// fields, then format 2's.
func appendMeta(b []byte, m runMeta) []byte {
	for _, s := range [...]string{m.project, m.operation, m.status, m.messageID} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendVarint(b, m.startedAt.UnixNano())
	for _, s := range [...]string{m.outcome, m.trigger, m.schedule} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// unpackMeta reads an index entry of either format.
func unpackMeta(b []byte) (runMeta, error) {
	var m runMeta
	var err error
	for _, f := range []*string{&m.project, &m.operation, &m.status, &m.messageID} {
		if *f, b, err = unpackString(b); err != nil {
			return m, err
		}
	}
	ns, w := binary.Varint(b)
	if w <= 0 {
		return m, errors.New("corrupt run index entry")
	}
	m.startedAt, b = time.Unix(0, ns), b[w:]
	if len(b) == 0 {
		return m, nil // format 1
	}
	for _, f := range []*string{&m.outcome, &m.trigger, &m.schedule} {
		if *f, b, err = unpackString(b); err != nil {
			return m, err
		}
	}
	return m, nil
}

// startedAtOf reads only the start time of an index entry, without
// allocating (a query with Since reads it for each candidate).
func startedAtOf(b []byte) (time.Time, error) {
	for range 4 {
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			return time.Time{}, errors.New("corrupt run index entry")
		}
		b = b[w+int(n):]
	}
	ns, w := binary.Varint(b)
	if w <= 0 {
		return time.Time{}, errors.New("corrupt run index entry")
	}
	return time.Unix(0, ns), nil
}

// entryMatches reports whether the index entry e has each of wanted's
// values, without allocating (a query reads every entry of the tail).
func entryMatches(e []byte, wanted []posting) bool {
	for _, p := range wanted {
		if v, ok := entryValue(e, p.field); !ok || string(v) != p.value {
			return false
		}
	}
	return true
}

// entryOrder is the fields of an index entry in order; 0 is the start time.
var entryOrder = [...]byte{fieldProject, fieldOperation, fieldStatus, fieldMessageID, 0, fieldOutcome, fieldTrigger, fieldSchedule}

// entryPostings returns the values of the index entry e by field, in
// entryOrder (the start time's place left nil), without allocating: a
// trim and a posting of the tail read every entry only for its lists. ok
// is false when e is corrupt; a format 1 entry has no later fields.
func entryPostings(e []byte) (values [len(entryOrder)][]byte, ok bool) {
	for i, f := range entryOrder {
		v, rest, ended, ok := entryField(e, f)
		if !ok || ended {
			return values, ok
		}
		values[i], e = v, rest
	}
	return values, true
}

// entryValue returns field's value in the index entry e (empty for a field
// format 1 lacks); ok is false when e is corrupt.
func entryValue(e []byte, field byte) (v []byte, ok bool) {
	for _, f := range entryOrder {
		v, rest, ended, ok := entryField(e, f)
		if !ok || ended {
			return nil, ok
		}
		if f == field && f != 0 {
			return v, true
		}
		e = rest
	}
	return nil, false
}

// entryField reads field f (of entryOrder) at the start of what is left of
// an index entry, e: its value (nil for the start time, 0) and the rest.
// ended is true when a format 1 entry ends before f; ok is false when e is
// corrupt.
func entryField(e []byte, f byte) (v, rest []byte, ended, ok bool) {
	if f == 0 {
		_, w := binary.Varint(e)
		if w <= 0 {
			return nil, nil, false, false
		}
		return nil, e[w:], false, true
	}
	if len(e) == 0 && f == fieldOutcome {
		return nil, nil, true, true // format 1
	}
	n, w := binary.Uvarint(e)
	if w <= 0 || uint64(len(e)-w) < n {
		return nil, nil, false, false
	}
	return e[w : w+int(n)], e[w+int(n):], false, true
}

func unpackString(b []byte) (string, []byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < n {
		return "", nil, errors.New("corrupt run index entry")
	}
	return string(b[w : w+int(n)]), b[w+int(n):], nil
}

// runTx writes runs in one read-write transaction: the run, its index
// entry and its postings together, and the count of stored runs. Keys and
// values put are appended to buf, which bbolt needs until the transaction
// ends (a slice taken from it stays valid when a later append moves it).
type runTx struct {
	runs, index, postings, meta *bolt.Bucket
	buf                         []byte
	count                       int    // stored runs
	posted                      []byte // the posted mark
	tail                        int    // stored runs above posted
	// newest is the highest id in the index: a run put with a higher one
	// (a new run, as ids grow with time) has no entry to look up.
	newest []byte
	// lists holds the ids to add to and remove from each chunked posting
	// list at commit, by list prefix (see applyLists). A keyed list's
	// key (see isKeyed) is put at once, and deleted at commit (in unkeyed).
	lists   map[string]*listChanges
	unkeyed [][]byte
	scratch []byte // a list prefix, to look lists up
}

// runBuckets is one set of the run buckets: a generation's (see
// bolt_gens.go), or the top level's of a file written before them.
type runBuckets struct{ runs, index, postings, meta *bolt.Bucket }

// topRunBuckets is the run buckets at the top level of a file written
// before generations (nil ones where it lacks them).
func topRunBuckets(tx *bolt.Tx) runBuckets {
	return runBuckets{runs: tx.Bucket(bucketRuns), index: tx.Bucket(bucketRunIndex),
		postings: tx.Bucket(bucketRunPostings), meta: tx.Bucket(bucketRunMeta)}
}

func newRunTx(b runBuckets, buf []byte) *runTx {
	t := &runTx{runs: b.runs, index: b.index, postings: b.postings, meta: b.meta, buf: buf,
		lists: map[string]*listChanges{}}
	// Runs and index entries are appended in id order, and each posting
	// list grows at its end: a page split at bbolt's default half would
	// leave every page behind the newest half empty for good. Full pages
	// leave no room for a run that grows when put again (running, then
	// finished), but that is mostly a run on the newest page.
	t.runs.FillPercent, t.index.FillPercent, t.postings.FillPercent = 1.0, 1.0, 1.0
	if v := t.meta.Get(metaCount); len(v) == 8 {
		t.count = int(binary.BigEndian.Uint64(v))
	}
	if v := t.meta.Get(metaTail); len(v) == 8 {
		t.tail = int(binary.BigEndian.Uint64(v))
	}
	t.posted = bytes.Clone(t.meta.Get(metaPosted))
	if k, _ := t.index.Cursor().Last(); k != nil {
		t.newest = bytes.Clone(k)
	}
	return t
}

// inTail reports whether id is above the posted mark: not on posting lists.
func (t *runTx) inTail(id []byte) bool { return bytes.Compare(id, t.posted) > 0 }

func (t *runTx) take(start int) []byte { return t.buf[start:len(t.buf):len(t.buf)] }

// put inserts or replaces r; a replaced run leaves the lists of the values
// it no longer has.
func (t *runTx) put(r Run) error {
	start := len(t.buf)
	t.buf = append(t.buf, r.ID...)
	key := t.take(start)
	var old runMeta
	var oldEntry []byte
	if bytes.Compare(key, t.newest) > 0 {
		t.newest = key // none stored: a new run, the usual case
	} else {
		oldEntry = t.index.Get(key)
	}
	if oldEntry != nil {
		var err error
		if old, err = unpackMeta(oldEntry); err != nil {
			return fmt.Errorf("run %s: %w", r.ID, err)
		}
	} else {
		t.count++
		if t.inTail(key) {
			t.tail++
		}
	}

	start = len(t.buf)
	var err error
	if t.buf, err = appendStoredRun(t.buf, r); err != nil {
		return err
	}
	if err := t.runs.Put(key, t.take(start)); err != nil {
		return err
	}
	return t.putIndex(key, metaOf(r), old, oldEntry != nil)
}

// putIndex writes id's index entry m and, below the posted mark, its
// postings; a run indexed before (hadOld, as old) leaves the lists of
// values it no longer has. A run in the tail gets its postings when the
// tail is posted. id must stay valid until the transaction ends.
func (t *runTx) putIndex(id []byte, m, old runMeta, hadOld bool) error {
	start := len(t.buf)
	t.buf = appendMeta(t.buf, m)
	if err := t.index.Put(id, t.take(start)); err != nil {
		return err
	}
	if t.inTail(id) {
		return nil
	}
	was := old.postings()
	for i, p := range m.postings() {
		if hadOld && was[i] == p {
			continue // on this list already
		}
		if hadOld && was[i].value != "" {
			t.removePosting(was[i], id)
		}
		if p.value != "" {
			if err := t.addPosting(p, id); err != nil {
				return err
			}
		}
	}
	return nil
}

// isKeyed reports whether field's lists keep one key per run (list prefix
// + id, its value a chunk of that one id) instead of chunks of up to
// chunkIDs: a message id is on one run mostly, and rewriting a list of
// one at each flush and trim (a seek, decode, merge and encode) cost more
// than the rest of a listener run's postings.
func isKeyed(field byte) bool { return field == fieldMessageID }

// addPosting puts id on p's list: at once for a keyed list, at commit
// otherwise. id must stay valid until the transaction ends.
func (t *runTx) addPosting(p posting, id []byte) error {
	t.scratch = appendPostingPrefix(t.scratch[:0], p)
	return t.addListed(p.field, id)
}

// addListed is addPosting for the list of field whose prefix is in
// t.scratch.
func (t *runTx) addListed(field byte, id []byte) error {
	if !isKeyed(field) {
		l := t.list()
		l.adds = append(l.adds, id)
		return nil
	}
	start := len(t.buf)
	t.buf = append(t.buf, t.scratch...)
	t.buf = append(t.buf, id...)
	key := t.take(start)
	start = len(t.buf)
	t.buf = appendIDs(t.buf, [][]byte{id})
	return t.postings.Put(key, t.take(start))
}

// removePosting takes id off p's list at commit. id must stay valid until
// the transaction ends.
func (t *runTx) removePosting(p posting, id []byte) {
	t.scratch = appendPostingPrefix(t.scratch[:0], p)
	t.removeListed(p.field, id)
}

// removeListed is removePosting for the list of field whose prefix is in
// t.scratch.
func (t *runTx) removeListed(field byte, id []byte) {
	if !isKeyed(field) {
		l := t.list()
		l.dels = append(l.dels, id)
		return
	}
	start := len(t.buf)
	t.buf = append(t.buf, t.scratch...)
	t.buf = append(t.buf, id...)
	t.unkeyed = append(t.unkeyed, t.take(start))
}

// list returns the changes to the chunked list whose prefix is in
// t.scratch, made on first use.
func (t *runTx) list() *listChanges {
	if l, ok := t.lists[string(t.scratch)]; ok {
		return l
	}
	l := &listChanges{prefix: bytes.Clone(t.scratch)}
	t.lists[string(l.prefix)] = l
	return l
}

// delete deletes the run id, its index entry and its postings.
func (t *runTx) delete(id []byte) error {
	entry := t.index.Get(id)
	if entry == nil {
		return nil
	}
	return t.deleteEntry(id, entry)
}

// deleteEntry deletes the run id whose index entry is entry (read from the
// index: a caller that has it spares a lookup).
func (t *runTx) deleteEntry(id, entry []byte) error {
	if t.inTail(id) {
		t.tail--
	} else {
		start := len(t.buf)
		t.buf = append(t.buf, id...)
		kept := t.take(start) // id may change before commit
		// A corrupt entry's postings, if any, stay: a query skips a
		// posting whose run is gone.
		values, _ := entryPostings(entry)
		for i, v := range values {
			if len(v) == 0 {
				continue
			}
			t.scratch = appendListPrefix(t.scratch[:0], entryOrder[i], v)
			t.removeListed(entryOrder[i], kept)
		}
	}
	if err := t.index.Delete(id); err != nil {
		return err
	}
	t.count--
	return t.runs.Delete(id)
}

// trim deletes the oldest runs (lowest ids) beyond the newest maxRuns.
func (t *runTx) trim(maxRuns int) error {
	excess := t.count - maxRuns
	if excess <= 0 {
		return nil
	}
	// The doomed runs' ids and index entries, copied into one buffer
	// (the cursor's are valid only until the first deletion).
	type doomedRun struct{ id, entry []byte }
	doomed := make([]doomedRun, 0, excess)
	var buf []byte
	c := t.index.Cursor()
	for k, v := c.First(); k != nil && len(doomed) < excess; k, v = c.Next() {
		start := len(buf)
		buf = append(append(buf, k...), v...)
		doomed = append(doomed, doomedRun{buf[start : start+len(k) : start+len(k)], buf[start+len(k) : len(buf) : len(buf)]})
	}
	// Newest first: bbolt removes a key from its in-memory node by moving
	// the keys after it down, so deleting a page's keys from its end moves
	// none, where oldest first moved the whole page at each deletion.
	for i := len(doomed) - 1; i >= 0; i-- {
		if err := t.deleteEntry(doomed[i].id, doomed[i].entry); err != nil {
			return err
		}
	}
	return nil
}

// commit posts the tail once it holds postingTail runs, writes the
// changes to chunked posting lists, adds first (a run trimmed in the
// transaction that added it leaves no posting), deletes the keys of keyed
// lists, and writes the count of runs, the tail's length and the posted
// mark; call it last.
//
// The keyed deletions come after the chunked lists: a trim deletes a run
// of adjacent keys, which can leave a page empty until the transaction
// commits, and a bbolt cursor stepping back (Prev) onto an empty page
// returns nil. floorKey then looks forward; writing the chunked lists
// first spares it that.
func (t *runTx) commit() error {
	if t.tail >= postingTail {
		if err := t.postTail(); err != nil {
			return err
		}
	}
	var err error
	if t.buf, err = applyLists(t.postings, t.lists, t.buf); err != nil {
		return err
	}
	for _, k := range t.unkeyed {
		if err := t.postings.Delete(k); err != nil {
			return err
		}
	}
	if err := t.meta.Put(metaCount, binary.BigEndian.AppendUint64(nil, uint64(max(t.count, 0)))); err != nil {
		return err
	}
	if err := t.meta.Put(metaTail, binary.BigEndian.AppendUint64(nil, uint64(max(t.tail, 0)))); err != nil {
		return err
	}
	return t.meta.Put(metaPosted, t.posted)
}

// postTail adds the runs above the posted mark to their posting lists (the
// chunked ones at commit) and moves the mark to the newest run.
func (t *runTx) postTail() error {
	c := t.index.Cursor()
	k, v := c.Seek(t.posted)
	if k != nil && bytes.Equal(k, t.posted) {
		k, v = c.Next()
	}
	for ; k != nil; k, v = c.Next() {
		start := len(t.buf)
		t.buf = append(t.buf, k...)
		id := t.take(start)
		// A corrupt entry gets the postings read before the corruption.
		values, _ := entryPostings(v)
		for i, val := range values {
			if len(val) == 0 {
				continue
			}
			t.scratch = appendListPrefix(t.scratch[:0], entryOrder[i], val)
			if err := t.addListed(entryOrder[i], id); err != nil {
				return err
			}
		}
		t.posted = id
	}
	t.tail = 0
	return nil
}
