package topology

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/watershed-io/watershed/topology/windowstore"
)

// Timers.
//
// A timer is a window of the group's timers store: its key is the timer's
// kind, name and key, its end the time it is due. Scheduling puts it
// (moving it if it existed), cancelling deletes it, firing marks it fired
// by the record that fired it (see stateValue), each write changelogged to
// "<group>-timers" with the callback's outputs (see state.go). Firing
// visits the due entries of the end index only.
//
// Stream-time timers fire after a record of their partition moves stream
// time past them; wall-clock timers fire after any record of the
// partition, and from ticks: every RunnerOptions.TickEvery (default
// DefaultTickEvery) the Runner looks at the partitions it owns and sends
// a tick record to the group's topic "<group>-ticks", partition by
// partition, where one is due (or fired timers' marks wait to be
// deleted: see dropSettledMarks). A tick is
// handled like any record: its firings emit, write and commit with it, on
// the partition's goroutine, under the same rules. So a timer fires once
// per schedule, in the process that owns its partition: a firing whose
// record does not commit (a crash, a refused emit) is replayed, and the
// replay fires it again. A tick costs one small record per partition
// holding a due timer per TickEvery. The test driver has no ticker: it
// fires the due wall-clock timers when it moves its clock.
//
// A timer's callback runs in the Context of the record that fired it,
// whose Key is the timer's; it cannot read or write the group table or a
// joined table (they are read by the record's own key).

// Timer kinds, the first byte of a timer's store key.
const (
	timerStream byte = 's'
	timerWall   byte = 'w'
)

// TimerHandler is a timer's callback, with the timer's key and value. A
// transient error fails the record that fired it (retried, the timer
// fires again with it); a permanent one dead-letters the timer alone and
// discards what the callback emitted (see Context.isolate).
type TimerHandler[V any] func(c *Context, key string, v V) error

// Timers is a processor's handle on one named kind of timer with values of
// type V: at most one schedule per key.
type Timers[V any] struct {
	name  string
	codec Codec[V]
	group string
}

// Timer declares timers named name for p, with values encoded by codec,
// handled by fn when due. The group gets the compacted changelog
// "<group>-timers" and the ticks topic "<group>-ticks", partitioned like
// its inputs.
func Timer[V any](p *Processor, name string, codec Codec[V], fn TimerHandler[V]) Timers[V] {
	h := Timers[V]{name: name, codec: codec, group: p.group}
	if !p.t.open("%q declares timer %q", p.group, name) {
		return h
	}
	td := p.timeState()
	switch {
	case name == "" || strings.ContainsRune(name, 0):
		p.t.declErrs = append(p.t.declErrs, fmt.Errorf("processor %q: timer name %q is not valid", p.group, name))
		return h
	case codec == nil || fn == nil:
		p.t.declErrs = append(p.t.declErrs, fmt.Errorf("processor %q: timer %q needs a codec and a handler", p.group, name))
		return h
	case td.handlers[name] != nil:
		p.t.declErrs = append(p.t.declErrs, fmt.Errorf("processor %q declares timer %q twice", p.group, name))
		return h
	}
	if td.timers == nil {
		td.timers = td.addState("timers", stateTimers, "timers", "framework", 0)
		d := &topicDecl{name: p.group + "-ticks", kind: kindTicks, valueType: "tick", codecName: "framework",
			key: "key", partitions: DefaultPartitions, owner: p.group, retentionMs: time.Hour.Milliseconds()}
		p.t.addTopic(d)
		td.ticks = &inputDecl{topic: d, handle: func(*Context, string, []byte) error { return nil }}
	}
	td.handlers[name] = func(c *Context, key string, raw []byte) error {
		v, err := codec.Decode(raw)
		if err != nil {
			return Reject(ReasonDecodeError, fmt.Errorf("timer %q of %q: %w", name, key, err))
		}
		return fn(c, key, v)
	}
	return h
}

// timerKey returns the store key of timer name for key, of kind.
func timerKey(kind byte, name, key string) []byte {
	b := make([]byte, 0, 2+len(name)+len(key))
	b = append(append(append(b, kind), name...), 0)
	return append(b, key...)
}

// AtStreamTime schedules the timer for key at stream time at, with v,
// replacing its schedule if it had one: it fires once a record moves the
// partition's stream time to at or past it.
func (t Timers[V]) AtStreamTime(c *Context, key string, at time.Time, v V) error {
	return t.schedule(c, timerStream, key, at, v)
}

// AtWallTime schedules the timer for key at wall-clock time at (the
// runner's Clock), with v, replacing its schedule if it had one.
func (t Timers[V]) AtWallTime(c *Context, key string, at time.Time, v V) error {
	return t.schedule(c, timerWall, key, at, v)
}

// Cancel removes the timer's schedule for key, if it has one.
func (t Timers[V]) Cancel(c *Context, key string) error {
	rt, ps, err := t.state(c)
	if err != nil {
		return err
	}
	for _, kind := range []byte{timerStream, timerWall} {
		if err := t.unset(c, rt, ps, kind, key); err != nil {
			return err
		}
	}
	return nil
}

// Scheduled returns when the timer is due for key and its value, if it is
// scheduled (seeing the callback's own changes).
func (t Timers[V]) Scheduled(c *Context, key string) (at time.Time, v V, ok bool, err error) {
	rt, ps, err := t.state(c)
	if err != nil {
		return at, v, false, err
	}
	for _, kind := range []byte{timerStream, timerWall} {
		sv, found, err := pendingTimer(c.tx(), ps.timerStore(rt, kind), timerKey(kind, t.name, key))
		if err != nil {
			return at, v, false, err
		}
		if found {
			v, err = t.codec.Decode(sv.payload)
			return time.UnixMilli(sv.end), v, err == nil, err
		}
	}
	return at, v, false, nil
}

// pendingTimer returns the timer of store key k, if it is scheduled (not
// fired).
func pendingTimer(tx *stateTx, store *windowstore.Store, k []byte) (stateValue, bool, error) {
	w, found, err := tx.get(store, k, 0)
	if err != nil || !found {
		return stateValue{}, false, err
	}
	sv, err := parseState(w.Value)
	if err != nil || sv.done {
		return stateValue{}, false, err
	}
	return sv, true, nil
}

func (t Timers[V]) state(c *Context) (*timeRuntime, *partState, error) {
	if t.group == "" || !c.is(t.group) {
		return nil, nil, fmt.Errorf("topology: timer %q used from %q, which did not declare it", t.name, c.proc.group)
	}
	ps, err := c.statePart()
	if err != nil {
		return nil, nil, err
	}
	return c.timeRuntime(), ps, nil
}

func (ps *partState) timerStore(rt *timeRuntime, kind byte) *windowstore.Store {
	if kind == timerWall {
		return ps.wall
	}
	return ps.stores[rt.td.timers]
}

func (t Timers[V]) schedule(c *Context, kind byte, key string, at time.Time, v V) error {
	rt, ps, err := t.state(c)
	if err != nil {
		return err
	}
	b, err := t.codec.Encode(v)
	if err != nil {
		return fmt.Errorf("topology: encode timer %q: %w", t.name, err)
	}
	other := timerWall
	if kind == timerWall {
		other = timerStream
	}
	if err := t.unset(c, rt, ps, other, key); err != nil {
		return err
	}
	k := timerKey(kind, t.name, key)
	if err := fits(rt.td.timers.topic.name, string(k), b, nil); err != nil {
		return c.refuse(err)
	}
	due := max(at.UnixMilli(), 0)
	c.tx().put(rt.td.timers, ps.timerStore(rt, kind), k, 0, stateRecord(due, stateValue{end: due, payload: b}))
	return nil
}

// unset deletes the timer's schedule of kind for key, if there is one.
func (t Timers[V]) unset(c *Context, rt *timeRuntime, ps *partState, kind byte, key string) error {
	store, k := ps.timerStore(rt, kind), timerKey(kind, t.name, key)
	_, ok, err := pendingTimer(c.tx(), store, k)
	if err != nil || !ok {
		return err
	}
	c.tx().del(rt.td.timers, store, k, 0)
	return nil
}

// fireTimers fires the timers of store due at now (Unix ms), in due order.
func (c *Context) fireTimers(ps *partState, store *windowstore.Store, now int64) error {
	rt := c.timeRuntime()
	var due []windowstore.Window
	err := store.Ending(0, now+1, func(w windowstore.Window) bool {
		due = append(due, windowstore.Window{Key: w.Key, End: w.End})
		return true
	})
	if err != nil || len(due) == 0 {
		return err
	}
	tx := c.tx()
	for _, d := range due {
		// The callback may have moved or cancelled it meanwhile.
		sv, ok, err := pendingTimer(tx, store, d.Key)
		if err != nil {
			return err
		}
		if !ok || sv.end != d.End {
			continue
		}
		name, key, found := bytes.Cut(d.Key[1:], []byte{0})
		// Kept as fired by this record, not deleted: see stateValue;
		// deleted once the record is settled (dropSettledMarks).
		tx.put(rt.td.timers, store, d.Key, 0, c.doneRecord(sv))
		if rt.kafka != nil {
			m := firedMark{store: store, key: d.Key, topic: c.Topic(), offset: c.Offset()}
			tx.after = append(tx.after, func() {
				ps.fired = append(ps.fired, m)
				ps.marks.Store(int64(len(ps.fired)))
			})
		}
		h := rt.td.handlers[string(name)]
		if !found || h == nil {
			continue // a timer no handler declares any more
		}
		k := string(key)
		subject := &deadSubject{stage: StageSuffixTimer, topic: rt.td.timers.topic.name, key: k}
		err = c.isolate(subject, fmt.Sprintf("timer %q for %q", name, k), func() [][]byte { return [][]byte{sv.payload} }, func() error {
			prev := tx.key
			tx.key = &k
			defer func() { tx.key = prev }()
			return h(c, k, sv.payload)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// firedMark is a fired timer's mark, to delete once the record that
// fired it settled.
type firedMark struct {
	store *windowstore.Store
	key   []byte
	// topic and offset name the firing record; committed says the
	// rebuild found it committed (any firing record then).
	topic     string
	offset    int64
	committed bool
}

// dropSettledMarks deletes, with the current record's state writes, the
// marks of the partition's fired timers whose firing record settled: it
// and every earlier record of its topic's partition had their outputs and
// state writes acknowledged (the ordered commits' settled prefix), or the
// rebuild found it committed. A mark exists so that a firing whose output
// was not acknowledged fires again (see stateValue); once its output is
// acknowledged the mark has done its work, and deleting it keeps the
// timers store to the keys scheduled, not every key that ever fired. A
// settled firing replayed (its commit lost) then fires nothing again: its
// outputs are already written. A key scheduled again since holds a
// pending timer, which stays.
func (c *Context) dropSettledMarks(rt *timeRuntime, ps *partState) error {
	if len(ps.fired) == 0 {
		return nil
	}
	tr, _ := c.g.Context().Value(commitsKey{}).(*commitTracker)
	settled := func(m firedMark) bool {
		return m.committed || (tr != nil && tr.settled(m.topic, c.Partition()) > m.offset)
	}
	// Most records come while no mark settled yet: they pay no write.
	if !slices.ContainsFunc(ps.fired, settled) {
		return nil
	}
	tx := c.tx()
	var kept []firedMark
	for _, m := range ps.fired {
		if !settled(m) {
			kept = append(kept, m)
			continue
		}
		sv, found, err := tx.getState(m.store, m.key, 0)
		if err != nil {
			return err
		}
		if found && sv.done && (m.committed || sv.byTopic == m.topic && sv.byOffset == m.offset) {
			tx.del(rt.td.timers, m.store, m.key, 0)
		}
	}
	// Forgotten only when the deletions are applied with the record.
	tx.after = append(tx.after, func() {
		ps.fired = kept
		ps.marks.Store(int64(len(kept)))
	})
	return nil
}

// collectMarks lists the marks a rebuilt partition's timer stores hold:
// those whose record was not committed were made pending again (undone),
// so every one left was fired by a committed record.
func (rt *timeRuntime) collectMarks(ps *partState) error {
	if rt.td.timers == nil {
		return nil
	}
	for _, store := range []*windowstore.Store{ps.stores[rt.td.timers], ps.wall} {
		err := store.Ending(doneEnd, doneEnd+1, func(w windowstore.Window) bool {
			ps.fired = append(ps.fired, firedMark{store: store, key: w.Key, committed: true})
			return true
		})
		if err != nil {
			return fmt.Errorf("topology: %s: fired timers: %w", rt.td.p.group, err)
		}
	}
	ps.marks.Store(int64(len(ps.fired)))
	return nil
}

// notInTimer refuses a read or write of table by the current key in a
// timer's callback: goka reads tables by the record's key, not the
// timer's.
func (c *Context) notInTimer(table string) error {
	if c.state != nil && c.state.key != nil {
		return fmt.Errorf("topology: table %s is read and written by the record's key, not from a timer's callback (use a Loopback to the timer's key)", table)
	}
	return nil
}
