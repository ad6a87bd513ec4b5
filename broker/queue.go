package broker

import (
	"container/list"
	"encoding/binary"
	"strconv"
	"strings"
	"time"

	"github.com/go-stomp/stomp/v3/frame"
)

// entry is one copy of a message on one queue (a topic fan-out makes one
// entry per subscription queue). Guarded by Broker.mu.
type entry struct {
	id         string
	dest       string
	hdr        []string // user headers as key, value pairs; immutable and shared between copies
	body       []byte   // nil when spilled to the journal
	size       int
	inMem      bool   // body counted in Broker.memBytes
	key        []byte // journal key; nil when not persisted
	countSaved bool   // its delivery count is in the journal (bucketDeliveries)
	priority   int
	expires    int64 // ms since epoch; 0 = never
	persistent bool
	deliveries int
	gone       bool // acknowledged, expired or moved
	elem       *list.Element
}

// header looks a header up for selectors.
func (e *entry) header(name string) (string, bool) {
	switch name {
	case "message-id":
		return e.id, true
	case "destination":
		return e.dest, true
	case "redelivered":
		return strconv.FormatBool(e.deliveries > 0), true
	}
	for i := 0; i+1 < len(e.hdr); i += 2 {
		if e.hdr[i] == name {
			return e.hdr[i+1], true
		}
	}
	return "", false
}

// queue holds pending entries by priority and the subscriptions consuming
// them: a /queue/ destination, a durable topic subscription, or an
// ephemeral (non-durable) topic subscription.
type queue struct {
	name      string // journal name; "" for ephemeral queues
	dest      string
	levels    [10]level // by priority
	pending   int       // entries waiting, in memory or on disk only
	bytes     int       // body bytes of the pending entries
	mem       int       // pending entries in memory
	disk      int       // pending entries on disk only
	inflight  int
	consumers []*subscription
	rr        int
	filter    *selector // topic subscription queues: selector applied at publish
	durable   *durableSub
	ephemeral bool
	removed   bool
	discarded int // ephemeral queues: entries discarded past MaxPendingBytes
}

func (q *queue) pushBack(e *entry) {
	e.elem = q.levels[e.priority].PushBack(e)
	q.pending++
	q.mem++
	q.bytes += e.size
}

func (q *queue) pushFront(e *entry) {
	e.elem = q.levels[e.priority].PushFront(e)
	q.pending++
	q.mem++
	q.bytes += e.size
}

// remove takes the pending entry e out of q.
func (q *queue) remove(e *entry) {
	q.levels[e.priority].Remove(e.elem)
	e.elem = nil
	q.pending--
	q.mem--
	q.bytes -= e.size
}

// clear drops every pending entry of q, in memory and on disk.
func (b *Broker) clear(q *queue, bt *batch) {
	for p := range q.levels {
		lv := &q.levels[p]
		for el := lv.Front(); el != nil; el = el.Next() {
			b.drop(el.Value.(*entry), bt)
		}
		lv.Init()
		lv.disk, lv.diskBytes = 0, 0
	}
	if q.disk > 0 && b.journal != nil {
		bt.ops = append(bt.ops, jop{del: true, prefix: true, key: queuePrefix(q.name)})
	}
	q.pending, q.bytes, q.mem, q.disk = 0, 0, 0, 0
}

// durableSub is a durable topic subscription, alive while its subscriber is away.
type durableSub struct {
	key    string
	topic  string
	sel    string
	q      *queue
	active *subscription
}

type ackMode int

const (
	ackAuto ackMode = iota
	ackClient
	ackClientIndividual
)

// subscription is one SUBSCRIBE of one connection.
type subscription struct {
	c        *conn
	id       string
	dest     string
	mode     ackMode
	prefetch int
	sel      *selector // queue consumers only
	q        *queue
	unacked  list.List // *delivery in delivery order
	byMsgID  map[string]*delivery
}

func (s *subscription) ready() bool {
	if s.mode != ackAuto && s.unacked.Len() >= s.prefetch {
		return false
	}
	return !s.c.throttled()
}

// delivery is an entry delivered to a subscription and not yet settled.
type delivery struct {
	e     *entry
	s     *subscription
	token string
	elem  *list.Element
}

// batch collects the effects of one client frame (or one COMMIT): journal
// operations to write in one transaction, and queues to dispatch.
type batch struct {
	ops     []jop
	puts    []*entry
	dirty   map[*queue]struct{}
	spilled []*queue // queues given entries on disk only: dispatched again once they are stored
}

func (bt *batch) touch(q *queue) {
	if bt.dirty == nil {
		bt.dirty = map[*queue]struct{}{}
	}
	bt.dirty[q] = struct{}{}
}

// nowMillis is the broker's clock for expiry and timestamps.
func nowMillis() int64 { return time.Now().UnixMilli() }

// queueFor returns the queue of a /queue/ destination, creating it.
func (b *Broker) queueFor(dest string) *queue {
	q := b.queues[dest]
	if q == nil {
		q = &queue{name: dest, dest: dest}
		b.queues[dest] = q
	}
	return q
}

func isTopic(dest string) bool {
	_, ok := cutPrefix(dest, "/topic/")
	return ok
}

// newEntry builds the entry of a SEND frame.
func (b *Broker) newEntry(f *frame.Frame) *entry {
	b.seq++
	e := &entry{
		id:       b.bootID + "-" + strconv.FormatUint(b.seq, 10),
		dest:     f.Header.Get(frame.Destination),
		body:     f.Body,
		size:     len(f.Body),
		priority: 4,
	}
	if p, err := strconv.Atoi(f.Header.Get("priority")); err == nil {
		e.priority = min(max(p, 0), 9)
	}
	if x, err := strconv.ParseInt(f.Header.Get("expires"), 10, 64); err == nil && x > 0 {
		e.expires = x
	}
	e.persistent = f.Header.Get("persistent") == "true"
	hdr := make([]string, 0, 2*f.Header.Len()+4)
	seen := map[string]bool{}
	for i := 0; i < f.Header.Len(); i++ {
		k, v := f.Header.GetAt(i)
		if seen[k] {
			continue // STOMP 1.2: the first occurrence wins
		}
		seen[k] = true
		switch k {
		case frame.Destination, frame.Receipt, frame.Transaction, frame.ContentLength,
			frame.MessageId, frame.Subscription, frame.Ack, "redelivered", "delivery-count", "priority":
			continue
		}
		hdr = append(hdr, k, v)
	}
	hdr = append(hdr, "priority", strconv.Itoa(e.priority))
	if !seen["timestamp"] {
		hdr = append(hdr, "timestamp", strconv.FormatInt(nowMillis(), 10))
	}
	e.hdr = hdr
	return e
}

// persist gives e a journal key and queues its write when e is persistent
// and the broker has a journal.
func (b *Broker) persist(q *queue, e *entry, bt *batch) {
	if !e.persistent || b.journal == nil || q.name == "" {
		return
	}
	b.seq++
	e.key = entryKey(q.name, e.priority, b.seq)
	bt.ops = append(bt.ops, jop{bucket: bucketEntries, key: e.key, val: encodeEntry(e), msg: 1, size: e.size})
	bt.puts = append(bt.puts, e)
}

func (b *Broker) account(e *entry) {
	if e.body != nil {
		e.inMem = true
		b.memBytes += int64(e.size)
	}
}

// publish routes a new message to its queue or to every subscription of its topic.
func (b *Broker) publish(e *entry, bt *batch) {
	if !isTopic(e.dest) {
		q := b.queueFor(e.dest)
		b.persist(q, e, bt)
		b.enqueue(q, e, bt)
		bt.touch(q)
		return
	}
	for q := range b.topics[e.dest] {
		if q.filter != nil && !q.filter.matches(e.header) {
			continue
		}
		cp := *e
		cp.elem = nil
		c := &cp
		b.persist(q, c, bt)
		b.enqueue(q, c, bt)
		if q.ephemeral {
			b.trim(q, bt)
		}
		bt.touch(q)
	}
}

// trim discards the oldest pending entries of an ephemeral (non-durable
// topic subscription) queue, lowest priority first, while it holds more
// than MaxPendingBytes: a subscriber that does not keep up loses messages
// rather than growing the broker's memory. The newest entry always stays.
func (b *Broker) trim(q *queue, bt *batch) {
	for p := 0; p < len(q.levels) && q.bytes > b.cfg.MaxPendingBytes && q.pending > 1; p++ {
		l := &q.levels[p]
		for l.Len() > 0 && q.bytes > b.cfg.MaxPendingBytes && q.pending > 1 {
			e := l.Front().Value.(*entry)
			q.remove(e)
			b.drop(e, bt)
			if q.discarded == 0 && len(q.consumers) > 0 {
				s := q.consumers[0]
				b.log.Warn("broker: slow topic subscriber: discarding its oldest messages",
					"destination", q.dest, "subscription", s.id, "remote", s.c.nc.RemoteAddr(), "max_pending_bytes", b.cfg.MaxPendingBytes)
			}
			q.discarded++
		}
	}
}

// drop forgets an entry for good: acknowledged, expired or dead-lettered.
func (b *Broker) drop(e *entry, bt *batch) {
	if e.gone {
		return
	}
	e.gone = true
	if e.key != nil {
		bt.ops = append(bt.ops, jop{bucket: bucketEntries, del: true, key: e.key, msg: -1, size: e.size})
		if e.countSaved {
			bt.ops = append(bt.ops, jop{bucket: bucketDeliveries, del: true, key: e.key})
		}
	}
	if e.inMem {
		e.inMem = false
		b.memBytes -= int64(e.size)
	}
}

// take removes and returns the first entry s may receive, dropping expired ones.
func (b *Broker) take(q *queue, s *subscription, now int64, bt *batch) *entry {
	for p := 9; p >= 0; p-- {
		l := &q.levels[p]
		for el := l.Front(); el != nil; {
			next := el.Next()
			e := el.Value.(*entry)
			if e.expires > 0 && e.expires <= now {
				q.remove(e)
				b.expire(e, bt)
			} else if s.sel == nil || s.sel.matches(e.header) {
				q.remove(e)
				return e
			}
			el = next
		}
	}
	return nil
}

// dispatch hands pending entries of q round-robin to subscriptions with room.
func (b *Broker) dispatch(q *queue, bt *batch) {
	n := len(q.consumers)
	if q.pending == 0 || n == 0 {
		return
	}
	now := nowMillis()
	for idle := 0; q.pending > 0 && idle < n; {
		b.fill(q)
		s := q.consumers[q.rr%n]
		q.rr = (q.rr + 1) % n
		if !s.ready() {
			idle++
			continue
		}
		e := b.take(q, s, now, bt)
		if e == nil {
			idle++
			continue
		}
		idle = 0
		b.deliver(s, e, bt)
	}
}

// deliver sends e to s as a MESSAGE frame.
func (b *Broker) deliver(s *subscription, e *entry, bt *batch) {
	body := e.body
	if body == nil && e.key != nil && e.size > 0 {
		var err error
		body, err = b.journal.get(e.key)
		if err != nil {
			b.log.Error("broker: reading spilled message body", "message-id", e.id, "err", err)
			b.drop(e, bt)
			return
		}
	}
	e.deliveries++
	f := frame.New(frame.MESSAGE,
		frame.Destination, e.dest,
		frame.MessageId, e.id,
		frame.Subscription, s.id,
	)
	var d *delivery
	if s.mode != ackAuto {
		s.c.ackSeq++
		d = &delivery{e: e, s: s, token: strconv.FormatUint(s.c.ackSeq, 10)}
		f.Header.Add(frame.Ack, d.token)
	}
	f.Header.Add("delivery-count", strconv.Itoa(e.deliveries))
	if e.deliveries > 1 {
		f.Header.Add("redelivered", "true")
	}
	for i := 0; i+1 < len(e.hdr); i += 2 {
		f.Header.Add(e.hdr[i], e.hdr[i+1])
	}
	f.Header.Add(frame.ContentLength, strconv.Itoa(len(body)))
	f.Body = body
	if d == nil {
		b.drop(e, bt)
	} else {
		d.elem = s.unacked.PushBack(d)
		s.byMsgID[e.id] = d
		s.c.acks[d.token] = d
		s.q.inflight++
	}
	s.c.send(f)
}

// untrack removes d from its subscription's bookkeeping.
func (b *Broker) untrack(d *delivery) {
	s := d.s
	s.unacked.Remove(d.elem)
	delete(s.byMsgID, d.e.id)
	delete(s.c.acks, d.token)
	s.q.inflight--
}

// settle acknowledges d for good.
func (b *Broker) settle(d *delivery, bt *batch) {
	b.untrack(d)
	b.drop(d.e, bt)
	bt.touch(d.s.q) // a prefetch slot is free
}

// giveBack returns d's entry to the front of its queue, or to the dead-letter
// queue when it has reached MaxDeliveries.
func (b *Broker) giveBack(d *delivery, bt *batch) {
	b.untrack(d)
	e, q := d.e, d.s.q
	if q.removed {
		b.drop(e, bt)
		return
	}
	if b.cfg.MaxDeliveries > 0 && e.deliveries >= b.cfg.MaxDeliveries {
		b.deadLetter(e, bt)
		return
	}
	if e.key != nil {
		e.countSaved = true
		bt.ops = append(bt.ops, jop{bucket: bucketDeliveries, key: e.key, val: binary.AppendUvarint(nil, uint64(e.deliveries))})
	}
	q.pushFront(e)
	bt.touch(q)
}

// expire disposes of an entry whose time to live passed: to its
// dead-letter queue when Config.DeadLetterExpired is set (not from a
// dead-letter queue), else dropped.
func (b *Broker) expire(e *entry, bt *batch) {
	if !b.cfg.DeadLetterExpired || strings.HasSuffix(e.dest, ".DLQ") {
		b.drop(e, bt)
		return
	}
	b.deadLetterFor(e, "expired", bt)
}

func (b *Broker) deadLetter(e *entry, bt *batch) { b.deadLetterFor(e, "max-deliveries", bt) }

// deadLetterFor moves e to its dead-letter queue, saying why in the
// dead-letter-reason header; a dead letter does not expire.
func (b *Broker) deadLetterFor(e *entry, reason string, bt *batch) {
	dlq := DeadLetterDestination(e.dest)
	b.drop(e, bt)
	hdr := make([]string, 0, len(e.hdr)+2)
	for i := 0; i+1 < len(e.hdr); i += 2 {
		if k := e.hdr[i]; k != "original-destination" && k != "dead-letter-reason" && k != "expires" {
			hdr = append(hdr, e.hdr[i], e.hdr[i+1])
		}
	}
	hdr = append(hdr, "original-destination", e.dest, "dead-letter-reason", reason)
	body := e.body
	if body == nil && e.key != nil && e.size > 0 {
		var err error
		if body, err = b.journal.get(e.key); err != nil {
			b.log.Error("broker: reading message body for dead letter", "message-id", e.id, "err", err)
			return
		}
	}
	d := &entry{id: e.id, dest: dlq, hdr: hdr, body: body, size: len(body), priority: e.priority,
		persistent: e.persistent}
	q := b.queueFor(dlq)
	b.persist(q, d, bt)
	b.enqueue(q, d, bt)
	bt.touch(q)
	b.log.Info("broker: message dead-lettered", "message-id", e.id, "from", e.dest, "to", dlq)
}

// finish dispatches touched queues and submits the batch's journal writes;
// done (may be nil) runs with b.mu held once everything before it is durable,
// or with the journal error. Called with b.mu held.
func (b *Broker) finish(bt *batch, done func(error)) {
	for len(bt.dirty) > 0 {
		dirty := bt.dirty
		bt.dirty = nil
		for q := range dirty {
			b.dispatch(q, bt)
		}
	}
	if b.journal == nil {
		if done != nil {
			done(nil)
		}
		return
	}
	if len(bt.ops) == 0 && done == nil {
		return
	}
	puts := bt.puts
	refill := bt.spilled
	var rt batch
	b.journal.submit(bt.ops, func(err error) {
		if err != nil {
			b.log.Error("broker: journal write failed", "err", err)
		}
		b.mu.Lock()
		for _, e := range puts {
			if b.memBytes <= b.cfg.MaxMemoryBytes {
				break
			}
			if e.inMem && !e.gone && e.key != nil {
				e.body, e.inMem = nil, false
				b.memBytes -= int64(e.size)
			}
		}
		for _, q := range refill {
			if q.disk > 0 {
				rt.touch(q) // entries it keeps on disk may now be read
			}
		}
		b.finish(&rt, nil)
		if done != nil {
			done(err)
		}
		b.mu.Unlock()
	})
}

// kick re-dispatches the queues c consumes from, after its outbound buffer drained.
func (b *Broker) kick(c *conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var bt batch
	for _, s := range c.subs {
		bt.touch(s.q)
	}
	b.finish(&bt, nil)
}
