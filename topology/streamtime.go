package topology

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/lovoo/goka"

	"github.com/watershed-io/watershed/topology/windowstore"
)

// Stream time in the state changelog.
//
// A partition's stream time is written with its state, as one entry of the
// group's first state changelog (key "", start streamTimeStart: no window
// or timer has one), so that a session that claims the partition starts
// from the stream time of its committed records: records late before a
// takeover are late after it, and records replayed after a rebalance are
// not judged by the times of records that never committed.
//
// The entry holds the partition's latest raises of stream time, each with
// the record that made it (topic, offset), and the stream time before the
// oldest of them. The rebuild (undoing like undone) keeps the raises of
// committed records only; the compacted topic keeps the latest entry.

// streamTimeStart marks the stream-time entry of a state changelog.
const streamTimeStart = int64(-1)

// streamSteps bounds the raises an entry keeps: with more raises by
// uncommitted records, the rebuild starts from the stream time before
// the oldest kept (then higher than the committed one).
const streamSteps = 16

// streamLog is a partition's stream-time entry.
type streamLog struct {
	// base is the stream time (Unix ns) before steps[0].
	base  int64
	steps []streamStep
	// written is the stream time last written; restored that the rebuild
	// found an entry.
	written  int64
	restored bool
}

type streamStep struct {
	topic     string
	offset, t int64
}

// raise records that the record (topic, offset) raised stream time to t.
func (l *streamLog) raise(topic string, offset, t int64) {
	if len(l.steps) == streamSteps {
		l.base = l.steps[0].t
		l.steps = append(l.steps[:0], l.steps[1:]...)
	}
	l.steps = append(l.steps, streamStep{topic: topic, offset: offset, t: t})
	l.written = t
}

func (l *streamLog) encode() []byte {
	b := binary.AppendUvarint(binary.BigEndian.AppendUint64(nil, uint64(l.base)), uint64(len(l.steps)))
	for _, s := range l.steps {
		b = appendRecordRef(binary.BigEndian.AppendUint64(b, uint64(s.t)), s.topic, s.offset)
	}
	return b
}

// restore sets l from an entry: the stream time its committed raises
// reached (committed holds the partition's committed offset per topic).
func (l *streamLog) restore(b []byte, committed map[string]int64) error {
	bad := fmt.Errorf("topology: corrupt stream time entry of %d bytes", len(b))
	if len(b) < 8 {
		return bad
	}
	st := int64(binary.BigEndian.Uint64(b))
	n, w := binary.Uvarint(b[8:])
	if w <= 0 {
		return bad
	}
	b = b[8+w:]
	for range n {
		if len(b) < 8 {
			return bad
		}
		t := int64(binary.BigEndian.Uint64(b))
		topic, off, rest, ok := parseRecordRef(b[8:])
		if !ok {
			return bad
		}
		b = rest
		if c, ok := committed[topic]; ok && c >= 0 && off < c {
			st = max(st, t)
		}
	}
	*l = streamLog{base: st, written: st, restored: true}
	return nil
}

// isStreamTime reports whether the changelog change c is a stream-time
// entry.
func isStreamTime(c windowstore.Change) bool {
	return c.Start == streamTimeStart && len(c.Key) == 0
}

// logStreamTime writes the partition's stream time to the state
// changelog when the record raised it. It runs inside gokaCall.
func (c *Context) logStreamTime() {
	rt := c.timeRuntime()
	if rt == nil || rt.kafka == nil || len(rt.td.states) == 0 {
		return // the test driver's state is never rebuilt
	}
	rt.mu.Lock()
	ps := rt.parts[c.Partition()]
	rt.mu.Unlock()
	if ps == nil {
		return
	}
	st := c.clock.streamTime(c.Partition())
	if st.IsZero() || st.UnixNano() <= ps.clock.written {
		return
	}
	ps.clock.raise(c.Topic(), c.Offset(), st.UnixNano())
	ch := windowstore.Change{Start: streamTimeStart, Value: ps.clock.encode()}
	c.g.Emit(goka.Stream(rt.td.states[0].topic.name), string(windowstore.ChangeKey(ch)), windowstore.ChangeValue(ch),
		headerOption([]Header{originHeader(c.Partition())})...)
}

// reset forgets partition p's stream time: a new session sets it from
// the state changelog.
func (s *streamClock) reset(p int32) { s.partition(p).Store(0) }

// restoreStreamTime sets partition p's stream time from its rebuilt
// entry; it reports whether there was one.
func (rt *timeRuntime) restoreStreamTime(p int32, ps *partState) bool {
	if !ps.clock.restored || rt.stream == nil {
		return ps.clock.restored
	}
	if ps.clock.base > 0 {
		rt.stream.advance(p, time.Unix(0, ps.clock.base))
	}
	return true
}
