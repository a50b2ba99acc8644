package topology

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/watershed-io/watershed/topology/windowstore"
)

// ReasonLate is the dead-letter reason (and skip reason) of a record that
// came after every window it belongs to closed: later than the grace
// period, by stream time.
const ReasonLate = "late"

// ReasonNoTime is the skip reason of a record an Aggregate does not add
// because it has no time: its stream's RecordTime said so (or it has no
// Kafka timestamp either).
const ReasonNoTime = "no_time"

// Windows says how an Aggregate cuts record time into windows: Tumbling,
// Hopping or Sessions, with a Grace period.
type Windows struct {
	size, advance, grace, retain time.Duration
	// pane, when set, is the length of the panes a tumbling window is
	// kept in (Panes).
	pane time.Duration
	// session: size is the inactivity gap of session windows.
	session bool
}

// Tumbling returns back-to-back windows of length size, aligned on the Unix
// epoch (an hour's windows start on the hour).
func Tumbling(size time.Duration) Windows { return Windows{size: size, advance: size} }

// Hopping returns windows of length size starting every advance (a record
// belongs to size/advance of them).
func Hopping(size, advance time.Duration) Windows { return Windows{size: size, advance: advance} }

// Sessions returns session windows: a key's records less than gap apart
// (in record time) share a window, from its first record to its last
// plus gap. A record that bridges two sessions merges them (the
// aggregate's Merge option says how). A session closes when stream time
// reaches its end plus the grace.
func Sessions(gap time.Duration) Windows { return Windows{size: gap, advance: gap, session: true} }

// Grace sets how long after its end, in stream time, a window still takes
// records (default none). A window closes when stream time reaches its end
// plus grace; a record for a closed window is late.
func (w Windows) Grace(d time.Duration) Windows { w.grace = d; return w }

// Retain sets how long, in stream time, windows are kept after they start
// (default: a day, or the window and its grace when longer). Retention
// drops whole segments of the store and bounds its changelog.
func (w Windows) Retain(d time.Duration) Windows { w.retain = d; return w }

// Panes keeps each window of a tumbling aggregate as panes of length d,
// which must divide the window's size: a record updates the pane its time
// falls in, and a window's panes are combined in time order with the
// Merge option (then required) when it closes, for OnUpdate and when it is
// fetched. An aggregate that grows with its records (a list of points, a
// set) then costs a record the size of its pane, not of its window: the
// store and changelog write of an hour that keeps every reading grows
// through the hour, that of a 10-minute pane six times less. Merge must
// treat the panes as consecutive parts of one window: merge(a, b) with a
// the earlier. It must also be associative (merge(merge(a, b), c) equals
// merge(a, merge(b, c))): the panes are merged as a balanced tree of
// neighbours, so that many short panes cost O(n log n), not O(n²).
func (w Windows) Panes(d time.Duration) Windows { w.pane = d; return w }

func (w Windows) retention() time.Duration {
	if w.retain > 0 {
		return max(w.retain, w.size+w.grace)
	}
	return max(24*time.Hour, w.size+w.grace)
}

// Window is one window's time span, [Start, End).
type Window struct {
	Start, End time.Time
}

// LatePolicy says what an Aggregate does with late records.
type LatePolicy int

const (
	// LateDeadLetter sends a late record to the dead-letter topic with
	// reason "late". It is the default.
	LateDeadLetter LatePolicy = iota
	// LateSkip drops it, counted by the runner's HookSkipped with
	// reason "late" (watershed_processor_skipped_total in promhooks).
	LateSkip
)

// AggregateOption configures an Aggregate.
type AggregateOption func(*aggConf)

type aggConf struct {
	name     string
	onUpdate any
	onClose  any
	merge    any
	late     LatePolicy
}

// WindowFunc is called with a window's aggregate, in the callback of the
// record that updated or closed it: its emits and its failure are that
// record's.
type WindowFunc[A any] func(c *Context, key string, w Window, agg A) error

// OnUpdate calls fn after every update of a window.
func OnUpdate[A any](fn WindowFunc[A]) AggregateOption { return func(a *aggConf) { a.onUpdate = fn } }

// OnClose calls fn once per window, when it closes: stream time passed its
// end plus grace. (A window whose closing record fails closes with the
// record's replay.)
func OnClose[A any](fn WindowFunc[A]) AggregateOption { return func(a *aggConf) { a.onClose = fn } }

// Merge says how two session windows' aggregates combine when a record
// bridges them (Sessions), and how a paned window's panes combine
// (Windows.Panes: merge(earlier, later), associative). Required with
// either, ignored otherwise.
func Merge[A any](fn func(key string, a, b A) A) AggregateOption {
	return func(c *aggConf) { c.merge = fn }
}

// Late sets the policy for late records.
func Late(p LatePolicy) AggregateOption { return func(a *aggConf) { a.late = p } }

// Named names the aggregate's store (default "aggregate"): its changelog
// is "<group>-<name>-windows". A group with two aggregates names them.
func Named(name string) AggregateOption { return func(a *aggConf) { a.name = name } }

// Windowed is the handle of a windowed aggregate of values of type A.
type Windowed[A any] struct {
	st    *stateDecl
	codec Codec[A]
	group string
	// size and merge combine a paned aggregate's panes (size 0: not
	// paned).
	size  time.Duration
	merge func(string, A, A) A
}

// Name returns the changelog topic of the aggregate's windows.
func (w Windowed[A]) Name() string {
	if w.st == nil {
		return "<undeclared>"
	}
	return w.st.topic.name
}

// Group returns the group that aggregates.
func (w Windowed[A]) Group() string { return w.group }

// StoredWindow is a window as a store holds it: its span, whether it
// closed, and its encoded aggregate.
type StoredWindow struct {
	Window
	Closed bool
	Value  []byte
}

// WindowSource reads the stored windows of an aggregate (by its changelog
// topic) of one key, those starting in [from, to). The test driver's
// stores are one (topologytest.Windows); a view over the changelog would
// be another.
type WindowSource interface {
	FetchWindows(topic, key string, from, to time.Time) ([]StoredWindow, error)
}

// WindowValue is one decoded window of an aggregate.
type WindowValue[A any] struct {
	Window
	Closed bool
	Value  A
}

// Fetch returns key's windows that start in [from, to), from src, oldest
// first. The panes of a paned aggregate (Windows.Panes) are combined into
// their windows.
func (w Windowed[A]) Fetch(src WindowSource, key string, from, to time.Time) ([]WindowValue[A], error) {
	if w.size > 0 {
		return w.fetchPanes(src, key, from, to)
	}
	raw, err := src.FetchWindows(w.Name(), key, from, to)
	if err != nil {
		return nil, err
	}
	out := make([]WindowValue[A], 0, len(raw))
	for _, r := range raw {
		v, err := w.codec.Decode(r.Value)
		if err != nil {
			return nil, fmt.Errorf("topology: decode window of %q at %s in %s: %w", key, r.Start, w.Name(), err)
		}
		out = append(out, WindowValue[A]{Window: r.Window, Closed: r.Closed, Value: v})
	}
	return out, nil
}

// fetchPanes reads the panes of the windows starting in [from, to) (they
// start before to plus a window) and combines each window's, in time
// order. A window is closed when its panes are (its close marks them all).
func (w Windowed[A]) fetchPanes(src WindowSource, key string, from, to time.Time) ([]WindowValue[A], error) {
	upTo := to.Add(w.size)
	if upTo.UnixMilli() < to.UnixMilli() {
		upTo = to // past the last time a store holds
	}
	raw, err := src.FetchWindows(w.Name(), key, from, upTo)
	if err != nil {
		return nil, err
	}
	var out []WindowValue[A]
	var panes []A           // the decoded panes of out's last window
	for _, r := range raw { // oldest first: a window's panes in order
		start := r.End.Add(-w.size)
		if start.Before(from) || !start.Before(to) {
			continue
		}
		v, err := w.codec.Decode(r.Value)
		if err != nil {
			return nil, fmt.Errorf("topology: decode pane of %q at %s in %s: %w", key, r.Start, w.Name(), err)
		}
		if n := len(out); n > 0 && out[n-1].End.Equal(r.End) {
			panes = append(panes, v)
			out[n-1].Closed = out[n-1].Closed && r.Closed
			continue
		}
		if n := len(out); n > 0 {
			out[n-1].Value = mergeInOrder(key, panes, w.merge)
		}
		panes = append(panes[:0], v)
		out = append(out, WindowValue[A]{Window: Window{Start: start, End: r.End}, Closed: r.Closed})
	}
	if n := len(out); n > 0 {
		out[n-1].Value = mergeInOrder(key, panes, w.merge)
	}
	return out, nil
}

// mergeInOrder merges a window's parts, given in time order, as a balanced
// tree of merges of neighbours: with an aggregate that grows with its
// records (a list), merging n parts one by one into the first copies
// O(n²) elements, the tree O(n log n). It relies on Merge being
// associative (see Windows.Panes). parts is used as scratch space; none
// gives the zero A.
func mergeInOrder[A any](key string, parts []A, merge func(string, A, A) A) A {
	if len(parts) == 0 {
		var zero A
		return zero
	}
	for n := len(parts); n > 1; {
		half := (n + 1) / 2
		for i := 0; i+1 < n; i += 2 {
			parts[i/2] = merge(key, parts[i], parts[i+1])
		}
		if n%2 == 1 {
			parts[n/2] = parts[n-1]
		}
		clear(parts[half:n]) // merged: let them go before the next level
		n = half
	}
	return parts[0]
}

// Aggregate declares that p aggregates stream s per key over windows of
// record time (Stream.TimedBy): each record's value is added, with add, to
// every window it falls in, starting from init. The windows live in a
// store owned by the framework, changelogged to the compacted topic
// "<group>-<name>-windows" (partitioned like s), rebuilt from it when a
// process takes a partition over, and dropped by whole time segments
// after their retention. OnUpdate and OnClose emit results; Late says
// what happens to records for closed windows.
//
// A window closes once stream time (the highest record time of the
// partition) reaches its end plus the grace period; closing costs in
// proportion to the windows due, not to the keys held. A record that
// leaves a window's encoded aggregate as it was writes nothing (no store
// write, no changelog record): a maximum, a set or a marker window costs
// a write only when it changes.
func Aggregate[V, A any](p *Processor, s Stream[V], w Windows, init func() A, add func(key string, v V, agg A) A, codec Codec[A], opts ...AggregateOption) Windowed[A] {
	conf := aggConf{name: "aggregate"}
	for _, o := range opts {
		o(&conf)
	}
	h := Windowed[A]{codec: codec, group: p.group}
	if !p.t.open("%q aggregates %q", p.group, s.topicName()) {
		return h
	}
	var problems []string
	if w.size < time.Millisecond || w.advance < time.Millisecond || w.advance > w.size || w.grace < 0 || w.retain < 0 {
		problems = append(problems, fmt.Sprintf("windows of %s every %s with grace %s are not valid", w.size, w.advance, w.grace))
	}
	if init == nil || add == nil || codec == nil {
		problems = append(problems, "init, add and codec are required")
	}
	onUpdate, ok1 := conf.onUpdate.(WindowFunc[A])
	onClose, ok2 := conf.onClose.(WindowFunc[A])
	if (conf.onUpdate != nil && !ok1) || (conf.onClose != nil && !ok2) {
		problems = append(problems, fmt.Sprintf("OnUpdate and OnClose must take a %s", typeName[A]()))
	}
	merge, ok3 := conf.merge.(func(string, A, A) A)
	if w.session && (conf.merge == nil || !ok3) {
		problems = append(problems, fmt.Sprintf("session windows need Merge of a %s", typeName[A]()))
	}
	if w.pane != 0 {
		switch {
		case w.session || w.advance != w.size:
			problems = append(problems, "panes are for tumbling windows")
		case w.pane < time.Millisecond || w.size%w.pane != 0 || w.pane%time.Millisecond != 0:
			problems = append(problems, fmt.Sprintf("panes of %s do not divide windows of %s", w.pane, w.size))
		case conf.merge == nil || !ok3:
			problems = append(problems, fmt.Sprintf("paned windows need Merge of a %s", typeName[A]()))
		}
	}
	if conf.name == "" || strings.ContainsAny(conf.name, " /\\,") {
		problems = append(problems, fmt.Sprintf("name %q is not valid", conf.name))
	}
	if len(problems) > 0 {
		p.t.declErrs = append(p.t.declErrs, fmt.Errorf("processor %q aggregates %q: %s", p.group, s.topicName(), strings.Join(problems, "; ")))
		return h
	}
	ret := w.retention()
	td := p.timeState()
	st := td.addState(conf.name+"-windows", stateWindows, typeName[A](), codecName(codec), (ret + 24*time.Hour).Milliseconds())
	st.size, st.retention = w.size.Milliseconds(), ret.Milliseconds()
	st.segment = max(st.retention/4, st.size)
	if w.pane > 0 {
		// A window's panes share a segment, so that retention drops
		// a window whole.
		st.segment = (st.segment + st.size - 1) / st.size * st.size
	}
	h.st = st
	if w.pane > 0 {
		h.size, h.merge = w.size, merge
	}
	a := &aggregate[V, A]{st: st, w: w, codec: codec, init: init, add: add, merge: merge, onUpdate: onUpdate, onClose: onClose, late: conf.late,
		seed: maphash.MakeSeed()}
	td.aggs = append(td.aggs, a)
	Consume(p, s, a.handle)
	return h
}

// aggregate is the runtime of one Aggregate.
type aggregate[V, A any] struct {
	st       *stateDecl
	w        Windows
	codec    Codec[A]
	init     func() A
	add      func(string, V, A) A
	merge    func(string, A, A) A
	onUpdate WindowFunc[A]
	onClose  WindowFunc[A]
	late     LatePolicy
	// seed hashes a window's encoded aggregate before and after a record,
	// to tell an unchanged one (64 bits: a collision, one in 2^64 such
	// records, would drop that record's change).
	seed maphash.Seed
}

func (a *aggregate[V, A]) handle(c *Context, key string, v V) error {
	ps, err := c.statePart()
	if err != nil {
		return err
	}
	store := ps.stores[a.st]
	if c.RecordTime().IsZero() {
		if c.obs != nil && !c.late {
			c.obs.skipped(c.proc.group, ReasonNoTime)
		}
		c.late = true // counted once, by the group's first aggregate
		return nil
	}
	t, st := c.RecordTime().UnixMilli(), c.StreamTime().UnixMilli()
	size, adv, grace := a.w.size.Milliseconds(), a.w.advance.Milliseconds(), a.w.grace.Milliseconds()
	k := []byte(key)
	accepted := 0
	tx := c.tx()
	if a.w.session {
		if t+size+grace > st && t >= 0 {
			accepted = 1
			if err := a.session(c, ps, key, v, t); err != nil {
				return err
			}
		}
	}
	pane := a.w.pane.Milliseconds()
	for start := floorDiv64(t, adv) * adv; !a.w.session && start > t-size && start >= 0; start -= adv {
		end := start + size
		if end+grace <= st {
			continue // closed by stream time
		}
		// at is where the record's part of the window is stored: the
		// window's start, or that of its pane.
		at := start
		if pane > 0 {
			at = floorDiv64(t, pane) * pane
		}
		agg := a.init()
		sv, ok, err := tx.getState(store, k, at)
		if err != nil {
			return err
		}
		var before uint64
		if ok {
			if sv.done {
				continue // closed
			}
			// Taken before add may change what the decoded value shares
			// with the stored bytes (a codec may alias them).
			before = maphash.Bytes(a.seed, sv.payload)
			if agg, err = a.codec.Decode(sv.payload); err != nil {
				return fmt.Errorf("topology: decode window of %q at %d in %s: %w", key, at, a.st.topic.name, err)
			}
			if sv.holds(c.Topic(), c.Offset()) {
				// A replay onto a window rebuilt with this record in it:
				// not added again, its update told again.
				accepted++
				if err := a.updated(c, ps, key, start, end, agg); err != nil {
					return err
				}
				continue
			}
		}
		agg = a.add(key, v, agg)
		b, err := a.codec.Encode(agg)
		if err != nil {
			return fmt.Errorf("topology: encode window for %s: %w", a.st.topic.name, err)
		}
		if ok && len(b) == len(sv.payload) && maphash.Bytes(a.seed, b) == before {
			// Unchanged: nothing to write. The window's applied record
			// stays the one before; a replay of this one adds it again to
			// the same aggregate, with the same result.
			accepted++
			if err := a.updated(c, ps, key, start, end, agg); err != nil {
				return err
			}
			continue
		}
		rec := c.appliedRecord(end, b)
		if err := a.fits(c, k, at, rec); err != nil {
			return err
		}
		tx.put(a.st, store, k, at, rec)
		ps.nextEnd[a.st] = min(ps.nextEnd[a.st], end)
		accepted++
		if err := a.updated(c, ps, key, start, end, agg); err != nil {
			return err
		}
	}
	if accepted > 0 || c.late {
		return nil // on time, or told late by another aggregate of the group
	}
	c.late = true
	late := fmt.Errorf("topology: record of %s at %s is later than the grace of its windows (stream time %s)",
		c.Topic(), time.UnixMilli(t).UTC().Format(time.RFC3339Nano), time.UnixMilli(st).UTC().Format(time.RFC3339Nano))
	if a.late == LateSkip {
		if c.obs != nil {
			c.obs.skipped(c.proc.group, ReasonLate)
		}
		return nil
	}
	c.DeadLetter(ReasonLate, late, c.raw)
	return nil
}

// session adds the record at t to key's session, merging the sessions it
// bridges. The sessions are read by start over the retention: a key's
// sessions within it, not its whole history.
func (a *aggregate[V, A]) session(c *Context, ps *partState, key string, v V, t int64) error {
	store := ps.stores[a.st]
	gap := a.w.size.Milliseconds()
	k := []byte(key)
	ws, err := store.Fetch(k, t-a.st.retention, t+gap+1)
	if err != nil {
		return err
	}
	tx := c.tx()
	for _, w := range ws {
		// A replay onto a session rebuilt with this record in it.
		sv, ok, err := tx.getState(store, k, w.Start)
		if err != nil {
			return err
		}
		if ok && !sv.done && w.Start <= t && t < sv.end && sv.holds(c.Topic(), c.Offset()) {
			agg, err := a.codec.Decode(sv.payload)
			if err != nil {
				return fmt.Errorf("topology: decode session of %q at %d in %s: %w", key, w.Start, a.st.topic.name, err)
			}
			return a.updated(c, ps, key, w.Start, sv.end, agg)
		}
	}
	start, end := t, t+gap
	agg, merged := a.init(), false
	for _, w := range ws {
		sv, ok, err := tx.getState(store, k, w.Start) // this callback's writes first
		if err != nil {
			return err
		}
		if !ok || sv.done || t < w.Start-gap || t >= sv.end {
			continue
		}
		prev, err := a.codec.Decode(sv.payload)
		if err != nil {
			return fmt.Errorf("topology: decode session of %q at %d in %s: %w", key, w.Start, a.st.topic.name, err)
		}
		if merged {
			agg = a.merge(key, agg, prev)
		} else {
			agg, merged = prev, true
		}
		start, end = min(start, w.Start), max(end, sv.end)
		tx.del(a.st, store, k, w.Start)
	}
	agg = a.add(key, v, agg)
	b, err := a.codec.Encode(agg)
	if err != nil {
		return fmt.Errorf("topology: encode session for %s: %w", a.st.topic.name, err)
	}
	rec := c.appliedRecord(end, b)
	if err := a.fits(c, k, start, rec); err != nil {
		return err
	}
	tx.put(a.st, store, k, start, rec)
	ps.nextEnd[a.st] = min(ps.nextEnd[a.st], end)
	return a.updated(c, ps, key, start, end, agg)
}

// fits refuses (too_large) a window write whose changelog record (value
// rec) the producer would refuse, failing the group on every restart: the
// record is dead-lettered instead, its windows unchanged.
func (a *aggregate[V, A]) fits(c *Context, key []byte, start int64, rec []byte) error {
	ch := windowstore.Change{Key: key, Start: start}
	n := recordBytes(string(windowstore.ChangeKey(ch)), nil, []Header{originHeader(c.Partition())}) + len(rec)
	if err := fitsBytes(a.st.topic.name, n); err != nil {
		return c.refuse(err)
	}
	return nil
}

// updated calls OnUpdate, if set, with window [start, end) of key: agg,
// or for a paned window its panes combined.
func (a *aggregate[V, A]) updated(c *Context, ps *partState, key string, start, end int64, agg A) error {
	if a.onUpdate == nil {
		return nil
	}
	if a.w.pane > 0 {
		var err error
		if agg, err = a.panesIn(c, ps, key, start, end); err != nil {
			return err
		}
	}
	return a.onUpdate(c, key, Window{Start: time.UnixMilli(start), End: time.UnixMilli(end)}, agg)
}

// panesIn combines the panes of key's window [start, end) as the callback
// sees them: the store's, with the callback's own writes over them.
func (a *aggregate[V, A]) panesIn(c *Context, ps *partState, key string, start, end int64) (A, error) {
	store := ps.stores[a.st]
	ws, err := store.Fetch([]byte(key), start, end)
	if err != nil {
		var zero A
		return zero, err
	}
	byStart := make(map[int64][]byte, len(ws))
	for _, w := range ws {
		byStart[w.Start] = w.Value
	}
	for _, op := range c.tx().ops { // in order: the newest write of a pane wins
		if op.store == store && string(op.c.Key) == key && op.c.Start >= start && op.c.Start < end {
			if op.c.Value == nil {
				delete(byStart, op.c.Start)
			} else {
				byStart[op.c.Start] = op.c.Value
			}
		}
	}
	starts := slices.Sorted(maps.Keys(byStart))
	payloads := make([][]byte, 0, len(starts))
	for _, s := range starts {
		sv, err := parseState(byStart[s])
		if err != nil {
			var zero A
			return zero, err
		}
		payloads = append(payloads, sv.payload)
	}
	return a.combine(key, start, payloads)
}

// combine decodes a window's panes, in time order, and merges them.
func (a *aggregate[V, A]) combine(key string, start int64, panes [][]byte) (A, error) {
	if len(panes) == 0 {
		return a.init(), nil
	}
	parts := make([]A, len(panes))
	for i, p := range panes {
		v, err := a.codec.Decode(p)
		if err != nil {
			return a.init(), fmt.Errorf("topology: decode pane of %q in the window at %d of %s: %w", key, start, a.st.topic.name, err)
		}
		parts[i] = v
	}
	return mergeInOrder(key, parts, a.merge), nil
}

// appliedRecord returns the record of a pending window ending at end with
// payload, the current record its applied one.
func (c *Context) appliedRecord(end int64, payload []byte) []byte {
	return stateRecord(end, stateValue{end: end, payload: payload, applied: true, appliedTopic: c.Topic(), appliedOffset: c.Offset()})
}

// closeDue closes the windows that end at or before streamTime - grace.
// It reads the store's end index only when stream time passed the
// partition's nextEnd (a window's end, for tumbling windows once per
// window length), and learns the next end as it does: the pending window
// ending first after the bound, in the store or written by this callback.
func (a *aggregate[V, A]) closeDue(c *Context, ps *partState, streamTime int64) error {
	bound := streamTime - a.w.grace.Milliseconds()
	if bound <= ps.closedTo[a.st] || bound < ps.nextEnd[a.st] {
		return nil
	}
	store := ps.stores[a.st]
	var due []windowstore.Window
	next := doneEnd // done windows are indexed at doneEnd: none pending
	err := store.Ending(0, doneEnd, func(w windowstore.Window) bool {
		if w.End > bound {
			next = w.End
			return false
		}
		due = append(due, windowstore.Window{Key: w.Key, Start: w.Start, End: w.End})
		return true
	})
	if err != nil {
		return err
	}
	tx := c.tx()
	for _, op := range tx.ops {
		// Windows this callback wrote are not in the store yet (none is
		// written due: see handle).
		if op.st == a.st && op.c.Value != nil && op.c.End > bound && op.c.End < doneEnd {
			next = min(next, op.c.End)
		}
	}
	for i := 0; i < len(due); {
		// A paned window's panes are consecutive in the end index (by
		// end, key, start): close them together.
		j := i + 1
		for a.w.pane > 0 && j < len(due) && due[j].End == due[i].End && bytes.Equal(due[j].Key, due[i].Key) {
			j++
		}
		if err := a.closeWindow(c, ps, due[i:j]); err != nil {
			return err
		}
		i = j
	}
	tx.after = append(tx.after, func() {
		ps.closedTo[a.st] = max(ps.closedTo[a.st], bound)
		ps.nextEnd[a.st] = next
		if _, err := store.Expire(streamTime); err != nil {
			// The store stays larger until the next expiry; the
			// changelog's own retention still bounds it.
			slog.Warn("expiring windows failed", "group", c.proc.group, "topic", a.st.topic.name, "err", err)
		}
	})
	return nil
}

// closeWindow closes one due window, stored whole or as its panes (in
// time order): each is marked done, and OnClose gets the aggregate. A
// failure on its merits (see isolate) sends the window's aggregate to the
// dead-letter topic: its panes combined when OnClose failed, each pane
// as stored when one did not decode or Merge failed.
func (a *aggregate[V, A]) closeWindow(c *Context, ps *partState, parts []windowstore.Window) error {
	store := ps.stores[a.st]
	tx := c.tx()
	key := parts[0].Key
	var payloads [][]byte
	var start, end int64
	for _, d := range parts {
		sv, ok, err := tx.getState(store, d.Key, d.Start)
		if err != nil {
			return err
		}
		if !ok || sv.done {
			continue
		}
		if len(payloads) == 0 {
			start, end = d.Start, sv.end
		}
		payloads = append(payloads, sv.payload)
		tx.put(a.st, store, d.Key, d.Start, c.doneRecord(sv))
	}
	if len(payloads) == 0 || a.onClose == nil {
		return nil
	}
	if a.w.pane > 0 {
		start = end - a.w.size.Milliseconds()
	}
	w := Window{Start: time.UnixMilli(start), End: time.UnixMilli(end)}
	subject := &deadSubject{stage: StageSuffixWindow, topic: a.st.topic.name, key: string(key)}
	var agg A
	combined := false
	values := func() [][]byte {
		if !combined {
			// A pane did not decode or Merge failed: every pane goes to
			// the dead-letter topic, as it is, so that none is lost.
			return payloads
		}
		if len(payloads) == 1 {
			return payloads
		}
		b, err := a.codec.Encode(agg)
		if err != nil {
			return payloads
		}
		return [][]byte{b}
	}
	return c.isolate(subject, fmt.Sprintf("closing window %s of %q in %s", w.Start.UTC().Format(time.RFC3339), key, a.st.topic.name), values, func() error {
		var err error
		if agg, err = a.combine(string(key), start, payloads); err != nil {
			return Reject(ReasonDecodeError, err)
		}
		combined = true
		return a.onClose(c, string(key), w, agg)
	})
}

// FetchWindows reads the windows of the aggregate whose changelog is
// topic from this processor's open partitions (the test driver's).
func (rt *timeRuntime) FetchWindows(topic, key string, from, to time.Time) ([]StoredWindow, error) {
	var st *stateDecl
	for _, s := range rt.td.states {
		if s.topic.name == topic && s.kind == stateWindows {
			st = s
		}
	}
	if st == nil {
		return nil, fmt.Errorf("topology: %s has no windows %s", rt.td.p.group, topic)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var stores []*windowstore.Store
	for _, ps := range rt.parts {
		stores = append(stores, ps.stores[st])
	}
	return fetchAll(stores, key, from, to)
}

// floorDiv64 divides rounding towards minus infinity.
func floorDiv64(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
