package topology

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/watershed-io/watershed/topology/internal/timectl"
)

// Clock tells wall-clock time to the processors of a Runner
// (RunnerOptions.Clock; Context.Now). Tests drive their own; the default is
// the system clock.
type Clock interface {
	Now() time.Time
}

// SystemClock is the Clock of the machine.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// RecordTime reads the time of a stream's record from its key and decoded
// value (such as the time a device measured it). ok false says the record
// has no time: its Context.RecordTime is zero, it does not move stream
// time, and an Aggregate skips it (ReasonNoTime). A zero time with ok
// true falls back to the record's Kafka timestamp.
type RecordTime[V any] func(key string, v V) (t time.Time, ok bool)

// TimedBy declares how the time of the stream's records is read: every
// processor consuming s sees fn's result as Context.RecordTime, and stream
// time advances by it. Without it, a record's time is its Kafka timestamp.
// It returns s, for chaining after NewStream, and must be declared before
// Build.
func (s Stream[V]) TimedBy(fn RecordTime[V]) Stream[V] {
	if s.t == nil || s.decl == nil {
		return s
	}
	if !s.t.open("%q declares its record time", s.decl.name) {
		return s
	}
	if fn == nil {
		s.t.declErrs = append(s.t.declErrs, fmt.Errorf("stream %q: TimedBy without a function", s.decl.name))
		return s
	}
	if s.decl.recordTime != nil {
		s.t.declErrs = append(s.t.declErrs, fmt.Errorf("stream %q declares its record time twice", s.decl.name))
		return s
	}
	s.decl.recordTime = fn
	return s
}

// recordTimeOf returns the time of the record (key, v) of the topic d:
// its declared RecordTime, else the Kafka timestamp c carries; zero when
// the RecordTime says it has none.
func recordTimeOf[V any](d *topicDecl, key string, v V, c *Context) time.Time {
	if fn, ok := d.recordTime.(RecordTime[V]); ok {
		t, ok := fn(key, v)
		if !ok {
			return time.Time{}
		}
		if !t.IsZero() {
			return t
		}
	}
	return c.Timestamp()
}

// streamClock is the time of one processor group in one process: its
// wall clock and, per input partition, its stream time (the highest record
// time seen). Partitions are handled concurrently, each by one goroutine.
type streamClock struct {
	wall  Clock
	parts sync.Map // int32 -> *atomic.Int64 (Unix ns; 0 = none yet)
	// driven is set when no Clock was given: a test driver's context may
	// carry one (see Context.Now).
	driven bool
	// rt is the group's framework-owned state in this processor (nil:
	// none; see state.go).
	rt *timeRuntime
}

func newStreamClock(wall Clock) *streamClock {
	if wall == nil {
		return &streamClock{wall: SystemClock{}, driven: true}
	}
	return &streamClock{wall: wall}
}

func (s *streamClock) partition(p int32) *atomic.Int64 {
	if v, ok := s.parts.Load(p); ok {
		return v.(*atomic.Int64)
	}
	v, _ := s.parts.LoadOrStore(p, new(atomic.Int64))
	return v.(*atomic.Int64)
}

// advance raises partition p's stream time to t and returns the result.
func (s *streamClock) advance(p int32, t time.Time) time.Time {
	st := s.partition(p)
	if t.IsZero() {
		return unixTime(st.Load())
	}
	ns := t.UnixNano()
	for {
		cur := st.Load()
		if cur >= ns {
			return unixTime(cur)
		}
		if st.CompareAndSwap(cur, ns) {
			return t
		}
	}
}

// streamTime returns partition p's stream time (zero before any record).
func (s *streamClock) streamTime(p int32) time.Time { return unixTime(s.partition(p).Load()) }

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// observeTime sets the record's time and advances its partition's stream
// time. A loop record carries data the group derived itself and was
// timestamped when looped: it does not move stream time.
func (c *Context) observeTime(t time.Time) {
	c.recordTime = t
	if c.clock == nil || (c.in != nil && c.proc != nil && c.in == c.proc.loop) {
		return
	}
	c.clock.advance(c.Partition(), t)
}

// RecordTime returns the record's time: what its stream's RecordTime reads
// (Stream.TimedBy), else its Kafka timestamp; zero when it has neither or
// its RecordTime says it has no time.
func (c *Context) RecordTime() time.Time { return c.recordTime }

// StreamTime returns the stream time of the record's partition in this
// group: the highest record time seen, this record's included. It never
// goes back within a session. A group with windows or timers writes it to
// its state changelog, and a session that claims the partition starts
// from the stream time of the committed records (see docs/time.md);
// without state, from the records it handles.
func (c *Context) StreamTime() time.Time {
	if c.clock == nil {
		return c.recordTime
	}
	return c.clock.streamTime(c.Partition())
}

// Now returns wall-clock time from the runner's Clock (the test driver's
// in tests).
func (c *Context) Now() time.Time {
	if c.clock == nil {
		return time.Now()
	}
	if c.clock.driven {
		if ctl := timectl.From(c.g.Context()); ctl != nil {
			return ctl.Now()
		}
	}
	return c.clock.wall.Now()
}
