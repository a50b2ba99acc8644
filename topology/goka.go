package topology

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/lovoo/goka"
	"github.com/watershed-io/watershed/topology/deadletter"
)

// rawCodec passes record bytes through goka untouched. Every goka edge of a
// topology uses it: typed encoding happens in the framework, where a failure
// is an error to handle instead of a panic that stops the processor.
type rawCodec struct{}

func (rawCodec) Encode(v any) ([]byte, error) {
	switch b := v.(type) {
	case []byte:
		return b, nil
	case nil:
		return nil, nil
	default:
		return nil, fmt.Errorf("topology: raw codec got %T", v)
	}
}

func (rawCodec) Decode(b []byte) (any, error) {
	if b == nil {
		return nil, nil
	}
	// goka reuses no buffers here, but a table value may be kept by the
	// caller past the storage's next write: copy.
	out := make([]byte, len(b))
	copy(out, b)
	return out, nil
}

// runEnv is what a Runner gives the processors it builds; the zero value
// is for test drivers and tools.
type runEnv struct {
	// stop is the Runner's context: done when the whole processor stops.
	stop context.Context
	// queues counts the goroutines of the batch queues, so that the
	// Runner closes the batch producers only after they ended.
	queues *sync.WaitGroup
}

// groupGraph builds the goka group graph of p. The callbacks report to obs.
// With a producer, a processor with a Batcher batches its writes (see
// Batcher); without one, its callbacks write at once.
func (p *Processor) groupGraph(obs observer, prod goka.Producer, env runEnv) *goka.GroupGraph {
	var edges []goka.Edge
	state := &retryState{stop: env.stop}
	var rt *batchRuntime
	if p.batch != nil && p.retryOf == nil && prod != nil {
		rt = newBatchRuntime(p, obs, state, prod, env.queues)
	}
	if main := p.retryOf; main != nil {
		var rrt *retryRuntime
		if prod != nil {
			rrt = newRetryRuntime(p, obs, state, prod, env.queues)
		}
		for i, tier := range main.retry.tiers {
			edges = append(edges, goka.Input(goka.Stream(tier.name), rawCodec{}, ordered(p.retryCallback(i, obs, state, rrt))))
		}
	} else {
		for _, in := range p.inputs {
			edges = append(edges, goka.Input(goka.Stream(in.topic.name), rawCodec{}, ordered(p.callback(in, obs, state, rt))))
		}
	}
	if p.loop != nil {
		edges = append(edges, goka.Loop(rawCodec{}, ordered(p.callback(p.loop, obs, state, nil))))
	}
	for _, o := range p.outputs {
		edges = append(edges, goka.Output(goka.Stream(o.name), rawCodec{}))
	}
	edges = append(edges, goka.Output(goka.Stream(p.t.deadLetter), rawCodec{}))
	if p.table != nil {
		edges = append(edges, goka.Persist(rawCodec{}))
	}
	for _, l := range p.lookups {
		edges = append(edges, goka.Lookup(goka.Table(l.name), rawCodec{}))
	}
	for _, j := range p.joins {
		edges = append(edges, goka.Join(goka.Table(j.name), rawCodec{}))
	}
	return goka.DefineGroup(goka.Group(p.group), edges...)
}

// callback wraps a typed handler into goka's callback: it runs the handler,
// recovers its panics, retries transient errors with backoff, and sends
// permanent failures to the dead-letter topic, so that one bad record never
// stops the processor. With a batch runtime, every record of the partition
// goes through its queue, so that commits stay in offset order.
func (p *Processor) callback(in *inputDecl, obs observer, state *retryState, rt *batchRuntime) goka.ProcessCallback {
	return func(g goka.Context, msg any) {
		start := time.Now()
		raw, _ := msg.([]byte)
		c := &Context{g: g, proc: p, in: in, raw: raw, obs: obs}
		if rt != nil {
			c.q = rt.queue(g)
		}
		first, err := p.handle(c, in, obs, state)
		switch {
		case c.q != nil:
			c.q.enqueue(c, first, err)
		case err != nil:
			// Shutting down mid-retry: leave the record uncommitted.
			done := g.DeferCommit()
			done(err)
			return
		}
		if err == nil {
			obs.processed(p.group, time.Since(start))
		}
	}
}

// handle runs the handler of one record with the processor's failure
// policy. It returns when the record first failed (zero if it did not), and
// an error only when the record must stay uncommitted (the processor stops
// while retrying it).
func (p *Processor) handle(c *Context, in *inputDecl, obs observer, state *retryState) (time.Time, error) {
	g, raw := c.g, c.raw
	obs.consumed(p.group, in.topic.name)
	// A replayed record carries the attempts it already had and when
	// it first failed.
	var first time.Time
	if ms := c.headerInt(HeaderFirstFailure, 0); ms > 0 {
		first = time.UnixMilli(ms)
	}
	if target := c.Header(HeaderReplayGroup); target != nil && p.replayedForOther(string(target)) {
		obs.skipped(p.group, ReasonReplayedForOther)
		return first, nil
	}
	base := int(c.headerInt(HeaderAttempts, 0))
	for local := 1; ; local++ {
		c.attempt = base + local
		err := c.invoke(in, raw)
		if err == nil {
			c.flush(envelopeFor(first))
			p.observeOutputs(c, obs)
			if c.rows == nil {
				state.succeeded()
			}
			return first, nil
		}
		if first.IsZero() {
			first = time.Now()
		}
		c.reset()
		if IsTransient(err) {
			obs.retried(p.group)
			if p.retry != nil && local >= p.retry.policy.InPlace {
				if !p.outage(g.Context(), state, err, false) {
					// The dependency answers others: the record leaves
					// its partition for the first retry topic.
					c.toRetry(0, in.topic.name, raw, c.attempt, first)
					c.flush(envelopeFor(first))
					return first, nil
				}
				// An outage: this attempt does not count against the
				// record's retries, or a long outage would spend them.
				base--
			}
			if sleepCtx(g.Context(), p.backoff.delay(local)) {
				continue
			}
			return first, fmt.Errorf("%w %s while retrying: %s: %v", errAbandoned, state.ended(), c, err)
		}
		if p.policy == Stop {
			g.Fail(fmt.Errorf("topology: %s (%w): %w", c, errPolicyStop, err))
			return first, nil // not reached: Fail panics
		}
		reason := ReasonOf(err)
		if in.topic.deadLetter {
			// A failed dead letter stays where it is: sending it to
			// the dead-letter topic again would loop.
			obs.skipped(p.group, reason)
			return first, nil
		}
		c.DeadLetter(reason, err, raw)
		c.flush(envelopeFor(first))
		obs.deadLettered(p.group, reason)
		return first, nil
	}
}

func (p *Processor) observeOutputs(c *Context, obs observer) {
	for _, e := range c.emits {
		obs.produced(p.group, e.topic, 1)
	}
	if len(c.loops) > 0 {
		obs.produced(p.group, p.loop.topic.name, len(c.loops))
	}
	for _, d := range c.dead {
		obs.deadLettered(p.group, d.reason)
	}
}

// invoke runs the handler once, turning a panic of the handler into an
// error. goka's own panics (its way of failing the processor) go on up.
func (c *Context) invoke(in *inputDecl, raw []byte) (err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if gp, ok := r.(gokaPanic); ok {
			panic(gp.v)
		}
		err = Reject(ReasonPanic, fmt.Errorf("panic: %v\n%s", r, debug.Stack()))
	}()
	return in.handle(c, c.g.Key(), raw)
}

// envelopeFor returns the factory of dead-letter envelopes for a record
// whose first failure was at first (zero when it did not fail itself).
func envelopeFor(first time.Time) envelopeFactory {
	return func(c *Context, reason string, err error, value []byte) ([]byte, error) {
		rec := c.info(first)
		b, cut, encErr := newEnvelope(&rec, reason, err, value)
		if cut && c.obs != nil {
			c.obs.deadLetterTruncated(c.proc.group)
		}
		return b, encErr
	}
}

// newEnvelope encodes the dead-letter envelope of a failure of record rec
// (whose first failure is now when rec.first is zero), cut down to
// MaxDeadLetterBytes if it is larger; it reports whether it was cut.
func newEnvelope(rec *recordInfo, reason string, err error, value []byte) ([]byte, bool, error) {
	now := time.Now()
	first := rec.first
	if first.IsZero() {
		first = now
	}
	e := deadletter.Envelope{
		Stage:        rec.group,
		Reason:       reason,
		Topic:        rec.topic,
		Partition:    rec.partition,
		Offset:       rec.offset,
		Key:          []byte(rec.key),
		Value:        value,
		Timestamp:    rec.timestamp,
		Attempts:     rec.attempt,
		FirstFailure: first,
		LastFailure:  now,
	}
	if err != nil {
		e.Error = err.Error()
	}
	for _, h := range rec.headers {
		e.Headers = append(e.Headers, deadletter.Header{Key: h.Key, Value: h.Value})
	}
	return encodeEnvelope(e, MaxDeadLetterBytes)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// IsAbandoned reports whether err says a processor stopped while retrying
// a record, leaving it uncommitted: the expected outcome of a shutdown
// during an outage, not a failure.
func IsAbandoned(err error) bool { return errors.Is(err, errAbandoned) }

// NewGokaProcessor builds the goka processor of p with the given goka
// options and no metrics. It is for test drivers (goka.WithTester) and
// tools; the Runner builds its processors itself.
func (p *Processor) NewGokaProcessor(brokers []string, opts ...goka.ProcessorOption) (*goka.Processor, error) {
	gp, err := goka.NewProcessor(brokers, p.groupGraph(nopObserver{}, nil, runEnv{}), append([]goka.ProcessorOption{goka.WithHasher(Hasher)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("topology: processor %s: %w", p.group, err)
	}
	return gp, nil
}
