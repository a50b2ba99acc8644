package topology

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"

	"github.com/lovoo/goka"

	"github.com/watershed-io/watershed/topology/windowstore"
)

// stateTx is what a callback did to the framework-owned state: the writes
// it queued, applied when it returns nil, and what to do once applied.
type stateTx struct {
	ops []stateOp
	// last indexes ops: the newest of each window, so that reads stay
	// cheap when a tick fires many timers.
	last  map[opKey]int
	after []func()
	// key, when set, is the key of the timer being fired: Context.Key
	// returns it.
	key *string
}

type opKey struct {
	store *windowstore.Store
	start int64
	key   string
}

type stateOp struct {
	st    *stateDecl
	store *windowstore.Store
	c     windowstore.Change // Value nil: a deletion
	// rec is the write's changelog record value (windowstore.ChangeValue,
	// c.Value its tail): built once, it is what the store keeps and what
	// the changelog gets. nil for a deletion.
	rec []byte
}

// tx returns the callback's state transaction, creating it.
func (c *Context) tx() *stateTx {
	if c.state == nil {
		c.state = &stateTx{}
	}
	return c.state
}

// timeRuntime returns the group's runtime, nil without state.
func (c *Context) timeRuntime() *timeRuntime {
	if c.clock == nil {
		return nil
	}
	return c.clock.rt
}

// statePart returns the state of the record's partition.
func (c *Context) statePart() (*partState, error) {
	rt := c.timeRuntime()
	if rt == nil {
		return nil, fmt.Errorf("topology: %s has no framework-owned state in this process", c.proc.group)
	}
	rt.bind(c.g.Context())
	return rt.part(c.Partition())
}

// put queues window (key, start) of store with rec, its changelog record
// value (stateRecord: the window's end, then its stored value).
func (tx *stateTx) put(st *stateDecl, store *windowstore.Store, key []byte, start int64, rec []byte) {
	end := int64(binary.BigEndian.Uint64(rec))
	tx.add(stateOp{st: st, store: store, c: windowstore.Change{Key: key, Start: start, End: end, Value: rec[8:]}, rec: rec})
}

// del queues the deletion of window (key, start) of store.
func (tx *stateTx) del(st *stateDecl, store *windowstore.Store, key []byte, start int64) {
	tx.add(stateOp{st: st, store: store, c: windowstore.Change{Key: key, Start: start}})
}

func (tx *stateTx) add(op stateOp) {
	if tx.last == nil {
		tx.last = map[opKey]int{}
	}
	tx.last[opKey{op.store, op.c.Start, string(op.c.Key)}] = len(tx.ops)
	tx.ops = append(tx.ops, op)
}

// get reads window (key, start) of store, seeing the writes queued. The
// value is the caller's (a queued write's is copied: the store and the
// changelog take those bytes, and a codec may keep what it decodes).
func (tx *stateTx) get(store *windowstore.Store, key []byte, start int64) (windowstore.Window, bool, error) {
	if tx != nil {
		if i, ok := tx.last[opKey{store, start, string(key)}]; ok {
			op := tx.ops[i]
			if op.c.Value == nil {
				return windowstore.Window{}, false, nil
			}
			return windowstore.Window{Key: key, Start: start, End: op.c.End, Value: slices.Clone(op.c.Value)}, true, nil
		}
	}
	return store.Get(key, start)
}

// getState reads and parses window (key, start) of store, seeing the
// writes queued.
func (tx *stateTx) getState(store *windowstore.Store, key []byte, start int64) (stateValue, bool, error) {
	cur, ok, err := tx.get(store, key, start)
	if err != nil || !ok {
		return stateValue{}, false, err
	}
	sv, err := parseState(cur.Value)
	return sv, err == nil, err
}

// flushState applies the callback's state writes to the local stores and
// emits them to their changelogs in the record's partition, with its
// outputs. It runs inside gokaCall and reports whether the flush may go
// on.
func (c *Context) flushState() bool {
	c.logStreamTime()
	tx := c.state
	if tx == nil {
		return true
	}
	for _, op := range tx.ops {
		var err error
		if op.rec == nil {
			_, err = op.store.Delete(op.c.Key, op.c.Start)
		} else {
			_, err = op.store.PutRecord(op.c.Key, op.c.Start, op.rec)
		}
		if err != nil && !errors.Is(err, windowstore.ErrExpired) {
			// The local store failed: the partition restarts and rebuilds
			// it; the record must not commit.
			err = fmt.Errorf("topology: %s: state write: %w", c, err)
			c.g.Fail(err)
			c.g.DeferCommit()(err)
			return false
		}
		// The store keeps rec and goka only reads it: one copy of the
		// value for both.
		c.g.Emit(goka.Stream(op.st.topic.name), string(windowstore.ChangeKey(op.c)), op.rec,
			headerOption([]Header{originHeader(c.Partition())})...)
	}
	for _, fn := range tx.after {
		fn()
	}
	return true
}

// afterRecord runs once a record's handler returned nil: it closes the
// windows and fires the timers that are due by the stream time and the
// wall clock, in the record's callback (their outputs and state writes
// commit with the record).
func (c *Context) afterRecord() error {
	rt := c.timeRuntime()
	if rt == nil {
		return nil
	}
	ps, err := c.statePart()
	if err != nil {
		return err
	}
	if err := c.dropSettledMarks(rt, ps); err != nil {
		return err
	}
	if st := c.StreamTime(); !st.IsZero() {
		ms := st.UnixMilli()
		for _, a := range rt.td.aggs {
			if err := a.closeDue(c, ps, ms); err != nil {
				return err
			}
		}
		if rt.td.timers != nil {
			if err := c.fireTimers(ps, ps.stores[rt.td.timers], ms); err != nil {
				return err
			}
		}
	}
	if rt.td.timers != nil {
		return c.fireTimers(ps, ps.wall, c.Now().UnixMilli())
	}
	return nil
}

// A stored window or timer: whether it is done (a window closed, a timer
// fired), its end (a window's end, a timer's due time, Unix ms), for a
// done one the record that did it (topic and offset, in the same
// partition), for a window the last input record added to it (its
// "applied" record, same form), and its payload (the encoded aggregate or
// timer value):
//
//	flag(1) end(8) [offset(8) uvarint(len(topic)) topic] [offset(8) uvarint(len(topic)) topic] payload
//
// flag's bit 0 says done (the first bracket is present), bit 1 that the
// applied record (the second) is. A done entry is moved in the store's end
// index to doneEnd, past every time, so that closing and firing visit
// pending ones only. The rebuild of a session's state (restore) turns a
// done entry whose record is not committed back into a pending one: that
// record is handled again, and closes or fires it again, so an output
// whose record crashed before its commit is not lost, even when the state
// write was acknowledged first. A window's applied record does the
// reverse for updates: a replayed record whose window already holds it
// (applied offset at or past the record's, in its topic) is not added
// again (see aggregate.handle).
type stateValue struct {
	done     bool
	end      int64
	byTopic  string
	byOffset int64
	// applied is set when appliedTopic/appliedOffset name the last record
	// added to the window.
	applied       bool
	appliedTopic  string
	appliedOffset int64
	payload       []byte
}

const (
	stateDone    byte = 1
	stateApplied byte = 2
	doneEnd           = int64(1) << 62
)

func encodeState(v stateValue) []byte { return stateRecord(v.end, v)[8:] }

// stateRecord returns the changelog record value of a window or timer
// stored at end (where the store's end index has it: v.end, or doneEnd
// once done) holding v: end, then v encoded.
func stateRecord(end int64, v stateValue) []byte {
	// Sized exactly: the store and its cache keep this slice.
	n := 8 + 1 + 8 + len(v.payload)
	if v.done {
		n += recordRefLen(v.byTopic)
	}
	if v.applied {
		n += recordRefLen(v.appliedTopic)
	}
	b := make([]byte, 0, n)
	b = binary.BigEndian.AppendUint64(b, uint64(end))
	var flag byte
	if v.done {
		flag |= stateDone
	}
	if v.applied {
		flag |= stateApplied
	}
	b = binary.BigEndian.AppendUint64(append(b, flag), uint64(v.end))
	if v.done {
		b = appendRecordRef(b, v.byTopic, v.byOffset)
	}
	if v.applied {
		b = appendRecordRef(b, v.appliedTopic, v.appliedOffset)
	}
	return append(b, v.payload...)
}

// recordRefLen is the length appendRecordRef adds for topic.
func recordRefLen(topic string) int {
	n := 8 + len(topic) + 1
	for x := uint64(len(topic)); x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

func appendRecordRef(b []byte, topic string, offset int64) []byte {
	b = binary.AppendUvarint(binary.BigEndian.AppendUint64(b, uint64(offset)), uint64(len(topic)))
	return append(b, topic...)
}

// parseRecordRef reads what appendRecordRef wrote, and returns the rest.
func parseRecordRef(b []byte) (string, int64, []byte, bool) {
	if len(b) < 8 {
		return "", 0, nil, false
	}
	off := int64(binary.BigEndian.Uint64(b))
	n, w := binary.Uvarint(b[8:])
	if w <= 0 || uint64(len(b)-8-w) < n {
		return "", 0, nil, false
	}
	return string(b[8+w : 8+w+int(n)]), off, b[8+w+int(n):], true
}

func parseState(b []byte) (stateValue, error) {
	bad := fmt.Errorf("topology: corrupt state value of %d bytes", len(b))
	if len(b) < 9 || b[0] > stateDone|stateApplied {
		return stateValue{}, bad
	}
	v := stateValue{done: b[0]&stateDone != 0, applied: b[0]&stateApplied != 0, end: int64(binary.BigEndian.Uint64(b[1:9]))}
	b = b[9:]
	ok := true
	if v.done {
		v.byTopic, v.byOffset, b, ok = parseRecordRef(b)
	}
	if ok && v.applied {
		v.appliedTopic, v.appliedOffset, b, ok = parseRecordRef(b)
	}
	if !ok {
		return stateValue{}, bad
	}
	v.payload = b
	return v, nil
}

// holds reports whether the window v already holds the record at offset
// of topic: it was the last one added, or an earlier one (records of a
// partition are added in offset order, and a window's value carries every
// record added before its last).
func (v stateValue) holds(topic string, offset int64) bool {
	return v.applied && v.appliedTopic == topic && v.appliedOffset >= offset
}

// doneRecord returns the record of v marked done by the current record
// (at doneEnd in the end index).
func (c *Context) doneRecord(v stateValue) []byte {
	v.done, v.byTopic, v.byOffset = true, c.Topic(), c.Offset()
	return stateRecord(doneEnd, v)
}

// undone turns a restored change marked done by a record that is not
// committed (committed holds the partition's committed offset per topic)
// back into a pending one.
func undone(c windowstore.Change, committed map[string]int64) (windowstore.Change, error) {
	if c.Value == nil {
		return c, nil
	}
	v, err := parseState(c.Value)
	if err != nil || !v.done {
		return c, err
	}
	if off, ok := committed[v.byTopic]; ok && (off < 0 || v.byOffset >= off) {
		v.done = false
		c.End, c.Value = v.end, encodeState(v)
	}
	return c, nil
}

// isolate runs fn, the callback of a firing timer or a closing window,
// inside the callback of the record that fired or closed it. A transient
// failure (or an outage, or any under the Stop policy) fails that record,
// which is retried with it; a permanent one is the subject's alone: what
// fn queued is discarded, the subject (its value) goes to the dead-letter
// topic with the failure's reason, and the record goes on, so that one
// bad timer or window does not fail every record of its partition. A
// panic of fn is such a failure (ReasonPanic).
// values gives the subject's values for its dead letters (one each), once
// fn returned.
func (c *Context) isolate(subject *deadSubject, what string, values func() [][]byte, fn func() error) error {
	tx := c.tx()
	ne, nl, nd, no, refused := len(c.emits), len(c.loops), len(c.dead), len(tx.ops), c.refused
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				if gp, ok := r.(gokaPanic); ok {
					panic(gp)
				}
				err = Reject(ReasonPanic, fmt.Errorf("panic: %v\n%s", r, debug.Stack()))
			}
		}()
		return fn()
	}()
	if err == nil && c.refused != refused {
		err = c.refused
	}
	if err == nil {
		return nil
	}
	err = fmt.Errorf("%s: %w", what, err)
	if IsTransient(err) || IsOutage(err) || c.proc.policy == Stop {
		return err
	}
	c.emits, c.loops, c.dead, c.refused = c.emits[:ne], c.loops[:nl], c.dead[:nd], refused
	tx.ops = tx.ops[:no]
	clear(tx.last)
	for i, op := range tx.ops {
		tx.last[opKey{op.store, op.c.Start, string(op.c.Key)}] = i
	}
	for _, v := range values() {
		c.deadLetterOf(subject, ReasonOf(err), err, v)
	}
	return nil
}
