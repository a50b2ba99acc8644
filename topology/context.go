package topology

import (
	"context"
	"fmt"
	"time"

	"github.com/lovoo/goka"
)

// Header is one record header.
type Header struct {
	Key   string
	Value []byte
}

// Context is what a callback sees of the record it handles: its key,
// position, time and headers, and the queue of outputs the callback
// produces. Outputs are queued and only handed to goka when the callback
// returns nil, so that a failed or retried callback leaves nothing behind.
//
// A Context is valid only during its callback.
type Context struct {
	g    goka.Context
	proc *Processor
	in   *inputDecl
	raw  []byte
	// obs receives what happens to the record beyond its callback's
	// outcome (a dead letter cut to fit); nil outside the callbacks.
	obs observer
	// clock is the group's stream and wall clock; recordTime the
	// record's time (see clock.go).
	clock      *streamClock
	recordTime time.Time
	// state holds the writes to framework-owned state (windows, timers)
	// queued by the callback (see state.go).
	state *stateTx

	emits   []pendingEmit
	loops   []pendingEmit
	dead    []pendingDead
	set     []byte
	setOp   tableOp
	attempt int
	// late is set once an aggregate of this attempt found the record late
	// (or without a time) and dead-lettered or counted it: the group's
	// other aggregates do not tell it again.
	late bool
	// refused is the first output refused in this attempt (too large):
	// the record fails with it whatever the callback returns, or it would
	// commit without that output.
	refused error

	// q is the partition's batch queue when the processor batches under
	// a Runner; rows are what the callback added to the batch.
	q     *partQueue
	rows  any
	nrows int

	// detached is set when the record is handled after its callback
	// returned (a retry companion's delay queue): flush then keeps the
	// outputs in sent for the queue to produce, and a failure in outErr.
	detached bool
	sent     []pendingEmit
	outErr   error
}

type tableOp int

const (
	tableNone tableOp = iota
	tableSet
	tableDelete
)

type pendingEmit struct {
	topic   string
	key     string
	value   []byte
	headers []Header
}

type pendingDead struct {
	reason string
	err    error
	value  []byte
	// subject, when set, is the timer or window the dead letter is of
	// (deadsubject.go).
	subject *deadSubject
}

func (c *Context) reset() {
	c.emits = c.emits[:0]
	c.loops = c.loops[:0]
	c.dead = c.dead[:0]
	c.set = nil
	c.setOp = tableNone
	c.rows, c.nrows = nil, 0
	c.refused = nil
	c.late = false
	c.state = nil
}

// refuse records err, an output refused for the current attempt, and
// returns it.
func (c *Context) refuse(err error) error {
	if c.refused == nil {
		c.refused = err
	}
	return err
}

// Key returns the record's key.
// In a timer's callback, it is the timer's key.
func (c *Context) Key() string {
	if c.state != nil && c.state.key != nil {
		return *c.state.key
	}
	return c.g.Key()
}

// Topic returns the topic the record came from.
func (c *Context) Topic() string { return string(c.g.Topic()) }

// Partition returns the record's partition.
func (c *Context) Partition() int32 { return c.g.Partition() }

// Offset returns the record's offset.
func (c *Context) Offset() int64 { return c.g.Offset() }

// Timestamp returns the record's time, or the zero time when it has none.
func (c *Context) Timestamp() time.Time { return c.g.Timestamp() }

// Group returns the processor group handling the record.
func (c *Context) Group() string { return c.proc.group }

// Attempt returns 1 on the first call for a record and counts up on each
// retry of a transient error.
func (c *Context) Attempt() int { return c.attempt }

// Header returns the value of the record header named key, or nil.
func (c *Context) Header(key string) []byte {
	h := c.g.Headers()
	if h == nil {
		return nil
	}
	return h[key]
}

// Headers returns a copy of the record's headers.
func (c *Context) Headers() []Header {
	h := c.g.Headers()
	out := make([]Header, 0, len(h))
	for k, v := range h {
		out = append(out, Header{Key: k, Value: v})
	}
	return out
}

// Context returns a context.Context that is cancelled when the processor
// stops, for calls to databases and other services.
func (c *Context) Context() context.Context { return c.g.Context() }

// DeadLetter sends value to the dead-letter topic with reason, as a record
// derived from the current one (same key, cut to 1 KiB; same topic,
// partition, offset and headers), while the current record's own processing goes on. The decode
// stage uses it for the single bad messages of an otherwise good package.
func (c *Context) DeadLetter(reason string, err error, value []byte) {
	c.dead = append(c.dead, pendingDead{reason: reason, err: err, value: value})
}

func (c *Context) queueEmit(topic, key string, value []byte, headers []Header) {
	c.emits = append(c.emits, pendingEmit{topic: topic, key: key, value: value, headers: headers})
}

func (c *Context) queueLoop(key string, value []byte) {
	c.loops = append(c.loops, pendingEmit{key: key, value: value})
}

func (c *Context) queueSet(b []byte) {
	c.set = b
	c.setOp = tableSet
}

func (c *Context) queueDelete() {
	c.set = nil
	c.setOp = tableDelete
}

// tableValue returns the current key's group-table bytes, seeing writes
// queued earlier in the same callback.
func (c *Context) tableValue() ([]byte, bool, error) {
	switch c.setOp {
	case tableSet:
		return c.set, true, nil
	case tableDelete:
		return nil, false, nil
	}
	var v any
	c.gokaCall(func() { v = c.g.Value() })
	b, _ := v.([]byte)
	if b == nil {
		return nil, false, nil
	}
	return b, true, nil
}

func (c *Context) lookup(table, key string) []byte {
	var v any
	c.gokaCall(func() { v = c.g.Lookup(goka.Table(table), key) })
	b, _ := v.([]byte)
	return b
}

func (c *Context) join(table string) []byte {
	var v any
	c.gokaCall(func() { v = c.g.Join(goka.Table(table)) })
	b, _ := v.([]byte)
	return b
}

// gokaPanic marks a panic raised by goka itself (its way of failing a
// processor), which must not be recovered as a user panic.
type gokaPanic struct{ v any }

// gokaCall runs a goka context method. goka fails a processor by panicking
// from inside such calls (and expects nobody to recover); the marker lets
// the callback wrapper tell those panics from the user's own.
func (c *Context) gokaCall(fn func()) {
	defer func() {
		if r := recover(); r != nil {
			panic(gokaPanic{r})
		}
	}()
	fn()
}

// flush hands the queued outputs to goka. goka marks the input record
// once every one of them is acknowledged; under a Runner it commits once
// every earlier record of the partition is marked too (see orderedGroup).
func (c *Context) flush(env envelopeFactory) {
	if c.detached {
		if c.state != nil {
			c.outErr = fmt.Errorf("topology: %s: windows and timers are not written from a retry", c)
			return
		}
		c.sent = append(c.sent, c.emits...)
		for _, d := range c.dead {
			if !c.admitDeadLetter(d) {
				continue
			}
			b, err := c.envelope(env, d)
			if err != nil {
				c.outErr = err
				return
			}
			c.sent = append(c.sent, pendingEmit{topic: c.proc.t.deadLetter, key: d.deadLetterKey(c), value: b,
				headers: []Header{originHeader(c.Partition())}})
		}
		return
	}
	c.gokaCall(func() {
		if !c.flushState() {
			return
		}
		switch c.setOp {
		case tableSet:
			c.g.SetValue(c.set)
		case tableDelete:
			c.g.Delete()
		}
		for _, e := range c.emits {
			c.g.Emit(goka.Stream(e.topic), e.key, e.value, headerOption(e.headers)...)
		}
		for _, e := range c.loops {
			c.g.Loopback(e.key, e.value)
		}
		for _, d := range c.dead {
			if !c.admitDeadLetter(d) {
				continue
			}
			b, err := c.envelope(env, d)
			if err != nil {
				// Only a record no Kafka record could hold fails to
				// encode; stopping beats losing it. goka returns from
				// Fail during a drain: the record must not commit.
				c.g.Fail(err)
				c.g.DeferCommit()(err)
				return
			}
			c.g.Emit(goka.Stream(c.proc.t.deadLetter), d.deadLetterKey(c), b, headerOption([]Header{originHeader(c.Partition())})...)
		}
	})
}

// admitDeadLetter reports whether d is to be written: not when a replay
// finds it written before (see deadonce.go).
func (c *Context) admitDeadLetter(d pendingDead) bool {
	return admitDeadLetter(c.g.Context(), c.Topic(), c.Partition(), c.Offset(), d.reason, d.err, d.value)
}

func headerOption(hs []Header) []goka.ContextOption {
	if len(hs) == 0 {
		return nil
	}
	h := make(goka.Headers, len(hs))
	for _, x := range hs {
		h[x.Key] = x.Value
	}
	return []goka.ContextOption{goka.WithCtxEmitHeaders(h)}
}

// envelopeFactory builds the dead-letter record for a failure of the
// current record.
type envelopeFactory func(c *Context, reason string, err error, value []byte) ([]byte, error)

// retryBytes is the size of the record as it would go to a retry topic.
func (c *Context) retryBytes() int {
	return recordBytes(c.Key(), c.raw, c.Headers()) + retryHeaderBytes
}

// String names the record: group, topic, partition, offset and key.
func (c *Context) String() string {
	return fmt.Sprintf("%s %s/%d@%d key=%q", c.proc.group, c.Topic(), c.Partition(), c.Offset(), c.Key())
}
