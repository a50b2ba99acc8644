package topology

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/lovoo/goka"
)

// callback wraps a typed handler into goka's callback: it runs the handler,
// recovers its panics, retries transient errors with backoff, and sends
// permanent failures to the dead-letter topic, so that one bad record never
// stops the processor. With a batch runtime, every record of the partition
// goes through its queue, so that commits stay in offset order.
func (p *Processor) callback(in *inputDecl, obs observer, state *retryState, rt *batchRuntime) goka.ProcessCallback {
	return func(g goka.Context, msg any) {
		start := time.Now()
		raw, _ := msg.([]byte)
		c := &Context{g: g, proc: p, in: in, raw: raw, obs: obs, clock: state.clock}
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
// while retrying it, or fails under the Stop policy).
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
		v := p.decide(g.Context(), state, obs, failure{err: err, origin: fromInput, local: local, attempt: c.attempt,
			deadLetterInput: in.topic.deadLetter, retryBytes: c.retryBytes(), what: c})
		switch v.action {
		case retryInPlace:
			if v.outage {
				// An outage: this attempt does not count against the
				// record's retries, or a long outage would spend them.
				base--
			}
			if sleepCtx(g.Context(), v.wait) {
				continue
			}
			return first, fmt.Errorf("%w %s while retrying: %s: %v", errAbandoned, state.ended(), c, err)
		case toRetryTopic:
			// The dependency answers others: the record leaves its
			// partition for the retry topic.
			c.toRetry(v.tier, in.topic.name, raw, c.attempt, first)
			c.flush(envelopeFor(first))
			return first, nil
		case stop:
			g.Fail(v.err)
			// goka returns from Fail, instead of panicking, once the
			// partition's session ended (a rebalance drains it): the
			// record must still not commit.
			return first, v.err
		case skip:
			obs.skipped(p.group, v.reason)
			return first, nil
		default:
			c.DeadLetter(v.reason, v.err, raw)
			c.flush(envelopeFor(first))
			obs.deadLettered(p.group, v.reason)
			return first, nil
		}
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
	c.refused = nil
	err = in.handle(c, c.g.Key(), raw)
	if err == nil {
		// Windows and timers due by now close and fire with the record.
		err = c.afterRecord()
	}
	if c.refused != nil {
		// An output was refused: the record fails even if the
		// callback ignored it.
		err = c.refused
	}
	return err
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
