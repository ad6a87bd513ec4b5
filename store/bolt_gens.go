package store

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Run history in generations: bucket rungens holds one nested bucket per
// generation, keyed by its number (8 bytes big-endian, higher for newer),
// each holding the run buckets of bolt_runs.go (runs, runindex,
// runpostings, runmeta) with their own posting lists, count and posted
// mark. A write puts a new run in the newest generation, starting the next
// once it holds genRuns; a run put again stays in the generation that has
// it. Retention drops the oldest generations whole while the rest hold at
// least MaxRuns: DeleteBucket frees a generation's pages without deleting
// its runs, index entries and postings one by one. The minute sweep then
// trims the oldest generation to exactly MaxRuns.
var bucketRunGens = []byte("rungens")

// genRuns is how many runs a generation holds: an eighth of maxRuns, at
// least 64. The store holds at most maxRuns + genRuns after a write.
func genRuns(maxRuns int) int { return max(maxRuns/8, 64) }

// gen is one generation in a read-write transaction.
type gen struct {
	key   []byte // its number, 8 bytes big-endian
	t     *runTx
	first []byte // its lowest run id; nil when it has none
	dirty bool   // written to in this transaction: commit writes its meta
}

// gens is the generations in a read-write transaction, oldest first. Their
// runTxs share one buffer: at most one is in use at a time (see use).
type gens struct {
	root    *bolt.Bucket
	list    []*gen
	genRuns int
	buf     []byte
	active  *runTx // the runTx holding buf
}

// openGens reads the generations of tx; buf is the transaction's buffer
// (see runTx), which commit returns.
func openGens(tx *bolt.Tx, buf []byte, maxRuns int) *gens {
	gs := &gens{root: tx.Bucket(bucketRunGens), genRuns: genRuns(maxRuns), buf: buf}
	c := gs.root.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v != nil {
			continue // not a bucket
		}
		g := &gen{key: bytes.Clone(k), t: newRunTx(genBuckets(gs.root.Bucket(k)), nil)}
		if first, _ := g.t.index.Cursor().First(); first != nil {
			g.first = bytes.Clone(first)
		}
		gs.list = append(gs.list, g)
	}
	return gs
}

// genBuckets is the run buckets of the generation b.
func genBuckets(b *bolt.Bucket) runBuckets {
	return runBuckets{runs: b.Bucket(bucketRuns), index: b.Bucket(bucketRunIndex),
		postings: b.Bucket(bucketRunPostings), meta: b.Bucket(bucketRunMeta)}
}

// use returns g's runTx, marked dirty, holding the transaction's buffer.
func (gs *gens) use(g *gen) *runTx {
	if gs.active != g.t {
		if gs.active != nil {
			gs.buf = gs.active.buf
		}
		g.t.buf, gs.active = gs.buf, g.t
	}
	g.dirty = true
	return g.t
}

// total is the number of stored runs.
func (gs *gens) total() int {
	n := 0
	for _, g := range gs.list {
		n += g.t.count
	}
	return n
}

// put inserts or replaces r in the generation that holds it, or as a new
// run in the newest.
func (gs *gens) put(r Run) error {
	g, err := gs.holder([]byte(r.ID))
	if err != nil {
		return err
	}
	if err := gs.use(g).put(r); err != nil {
		return err
	}
	if g.first == nil || bytes.Compare([]byte(r.ID), g.first) < 0 {
		g.first = []byte(r.ID)
	}
	return nil
}

// holder is the generation whose index has id, or else the newest one,
// started anew when it is full.
func (gs *gens) holder(id []byte) (*gen, error) {
	for i := len(gs.list) - 1; i >= 0; i-- {
		g := gs.list[i]
		if g.first != nil && bytes.Compare(id, g.first) >= 0 && bytes.Compare(id, g.t.newest) <= 0 &&
			g.t.index.Get(id) != nil {
			return g, nil
		}
	}
	if n := len(gs.list); n > 0 && gs.list[n-1].t.count < gs.genRuns {
		return gs.list[n-1], nil
	}
	return gs.start()
}

// stored returns the stored JSON of run id; nil when there is none.
func (gs *gens) stored(id []byte) []byte {
	for i := len(gs.list) - 1; i >= 0; i-- {
		if v := gs.list[i].t.runs.Get(id); v != nil {
			return v
		}
	}
	return nil
}

// start begins a new newest generation, first posting the tail of the one
// it follows: only the newest generation has a tail.
func (gs *gens) start() (*gen, error) {
	n := uint64(1)
	if len(gs.list) > 0 {
		last := gs.list[len(gs.list)-1]
		if err := gs.postTail(last); err != nil {
			return nil, err
		}
		n = binary.BigEndian.Uint64(last.key) + 1
	}
	key := binary.BigEndian.AppendUint64(nil, n)
	b, err := createGen(gs.root, key)
	if err != nil {
		return nil, err
	}
	g := &gen{key: key, t: newRunTx(b, nil)}
	gs.list = append(gs.list, g)
	return g, nil
}

// createGen creates generation key under root, of runIndexFormat.
func createGen(root *bolt.Bucket, key []byte) (runBuckets, error) {
	b, err := root.CreateBucket(key)
	if err != nil {
		return runBuckets{}, fmt.Errorf("create run generation %x: %w", key, err)
	}
	for _, name := range [][]byte{bucketRuns, bucketRunIndex, bucketRunPostings, bucketRunMeta} {
		if _, err := b.CreateBucket(name); err != nil {
			return runBuckets{}, err
		}
	}
	rb := genBuckets(b)
	return rb, rb.meta.Put(metaFormat, binary.BigEndian.AppendUint64(nil, runIndexFormat))
}

// retain drops the oldest generations while the others hold at least
// maxRuns runs.
func (gs *gens) retain(maxRuns int) error {
	total := gs.total()
	for len(gs.list) > 1 && total-gs.list[0].t.count >= maxRuns {
		if err := gs.drop(); err != nil {
			return err
		}
		total = gs.total()
	}
	return nil
}

// drop deletes the oldest generation.
func (gs *gens) drop() error {
	g := gs.list[0]
	if gs.active == g.t {
		gs.buf, gs.active = g.t.buf, nil
	}
	gs.list = gs.list[1:]
	if err := gs.root.DeleteBucket(g.key); err != nil {
		return fmt.Errorf("drop run generation %x: %w", g.key, err)
	}
	return nil
}

// trim keeps exactly the newest maxRuns runs (lowest ids go first),
// dropping whole generations where it can and deleting at most most runs
// one by one (0: no bound). It reports whether runs beyond maxRuns remain.
func (gs *gens) trim(maxRuns, most int) (bool, error) {
	if err := gs.retain(maxRuns); err != nil {
		return false, err
	}
	excess := gs.total() - maxRuns
	if excess <= 0 {
		return false, nil
	}
	n := excess
	if most > 0 {
		n = min(n, most)
	}
	oldest := gs.list[0] // it holds more than excess: retain kept it
	t := gs.use(oldest)
	if err := t.trim(t.count - n); err != nil {
		return false, err
	}
	return n < excess, nil
}

// trimRuns deletes the runs of db beyond the newest maxRuns, exactly,
// trimChunk at most per transaction (see gens.trim).
func trimRuns(db *bolt.DB, maxRuns int) error {
	for more := true; more; {
		err := db.Update(func(tx *bolt.Tx) error {
			gs := openGens(tx, nil, maxRuns)
			var err error
			if more, err = gs.trim(maxRuns, trimChunk); err != nil {
				return err
			}
			_, err = gs.commit()
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// postAll posts every generation's tail.
func (gs *gens) postAll() error {
	for _, g := range gs.list {
		if err := gs.postTail(g); err != nil {
			return err
		}
	}
	return nil
}

// postTail posts g's tail, if it has one.
func (gs *gens) postTail(g *gen) error {
	if g.t.tail <= 0 {
		return nil
	}
	return gs.use(g).postTail()
}

// commit commits the generations written to (see runTx.commit) and returns
// the transaction's buffer.
func (gs *gens) commit() ([]byte, error) {
	for _, g := range gs.list {
		if !g.dirty {
			continue
		}
		if err := gs.use(g).commit(); err != nil {
			return nil, err
		}
	}
	if gs.active != nil {
		gs.buf = gs.active.buf
	}
	return gs.buf, nil
}

// readGens returns the run buckets of each generation of tx, newest first.
func readGens(tx *bolt.Tx) []runBuckets {
	root := tx.Bucket(bucketRunGens)
	var out []runBuckets
	c := root.Cursor()
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		if v == nil {
			out = append(out, genBuckets(root.Bucket(k)))
		}
	}
	return out
}
