package topology

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/lovoo/goka"
)

// Record headers the framework reads and writes for retries and replays.
const (
	// HeaderAttempts holds how many times the record was processed and
	// failed before (decimal). The retry topics and `watershed dlq replay`
	// set it, so that a record failing again reports its total attempts in
	// its dead-letter envelope instead of starting over.
	HeaderAttempts = "watershed-attempts"
	// HeaderRetryOrigin names the input topic a retried record came from.
	HeaderRetryOrigin = "watershed-retry-origin"
	// HeaderRetryDue is when a retried record may be processed again, Unix ms.
	HeaderRetryDue = "watershed-retry-due-ms"
	// HeaderFirstFailure is when the record first failed, Unix ms. A new
	// dead-letter envelope of a retried or replayed record keeps it.
	HeaderFirstFailure = "watershed-first-failure-ms"
	// HeaderReplayGroup names the group a replayed record is meant for.
	// Other groups reading the same topic commit and skip it, so that a
	// replay for one failed stage is not processed twice by the others.
	HeaderReplayGroup = "watershed-replay-group"
)

// ReasonReplayedForOther is the skip reason of a replayed record meant for
// another group.
const ReasonReplayedForOther = "replayed_for_other_group"

// ReasonRetriesExhausted is the dead-letter reason of a record that failed
// transiently on every attempt its retry policy allows.
const ReasonRetriesExhausted = "retries_exhausted"

// RetryPolicy moves records whose processing fails transiently out of the
// way, so that one record never blocks its partition, while a whole outage
// still pauses the processor instead of flooding the retry topics.
//
// A transient failure is first retried in place InPlace times with the
// processor's backoff. Then the framework asks whether the dependency is
// down: an error marked Outage says so itself, whatever the probe answers;
// otherwise Probe, when set, answers; without a probe, the processor is
// taken to be in an outage when no record of it succeeded within
// OutageWindow. In an outage the record keeps being retried in place (the
// partition pauses, nothing is skipped, nothing is dead-lettered). The
// companion group, which sees only failing records, can tell an outage
// only from an Outage error or a Probe: without either, a retried record
// moves on through the retry topics. Otherwise the record goes to the first
// retry topic, "<group>-retry-1", where it waits Delays[0] and is processed
// again by the companion group "<group>-retry"; failing again, it moves to
// the next retry topic, and after MaxAttempts attempts in all it goes to
// the dead-letter topic with reason "retries_exhausted".
type RetryPolicy struct {
	// InPlace is the number of attempts before a record leaves its
	// partition (default 3).
	InPlace int
	// Delays are the waits of the retry topics, one topic each (default
	// 1s, 10s, 1m).
	Delays []time.Duration
	// MaxAttempts bounds the attempts of a record, in place and in retry
	// topics (default InPlace + 2*len(Delays)).
	MaxAttempts int
	// Probe reports whether the processor's dependency answers; nil means
	// "judge from recent successes".
	Probe func(ctx context.Context) error
	// OutageWindow is how recent a success must be, without a probe, for a
	// failure to count as the record's own (default 30s).
	OutageWindow time.Duration
}

func (r *RetryPolicy) defaults() {
	if r.InPlace < 1 {
		r.InPlace = 3
	}
	if len(r.Delays) == 0 {
		r.Delays = []time.Duration{time.Second, 10 * time.Second, time.Minute}
	}
	if r.MaxAttempts < 1 {
		r.MaxAttempts = r.InPlace + 2*len(r.Delays)
	}
	if r.OutageWindow == 0 {
		r.OutageWindow = 30 * time.Second
	}
}

// WithRetryTopics gives a stateless processor retry topics (see
// RetryPolicy). The companion group "<group>-retry" is declared with it and
// runs the same callbacks on the retried records; run it wherever the group
// runs. Processors with a group table or loop cannot use retry topics: a
// retried record would change the table out of order.
func WithRetryTopics(policy RetryPolicy) ProcessorOption {
	return func(p *Processor) {
		policy.defaults()
		p.retry = &retryDecl{policy: policy}
	}
}

type retryDecl struct {
	policy    RetryPolicy
	tiers     []*topicDecl
	companion *Processor
}

// declareRetry adds the retry topics and the companion group of p. It runs
// when p is declared, so the companion follows p in declaration order.
func (t *Topology) declareRetry(p *Processor) {
	r := p.retry
	for i := range r.policy.Delays {
		d := &topicDecl{
			name:       fmt.Sprintf("%s-retry-%d", p.group, i+1),
			kind:       kindStream,
			valueType:  "retried record",
			codecName:  "raw",
			key:        "key",
			partitions: DefaultPartitions,
			owner:      p.group,
		}
		t.addTopic(d)
		r.tiers = append(r.tiers, d)
	}
	r.companion = &Processor{t: t, group: p.group + "-retry", retryOf: p, backoff: p.backoff,
		description: "retries of " + p.group + "'s records that failed transiently"}
	t.procs = append(t.procs, r.companion)
}

// retryState is the per-run state of a processor's retry decisions.
type retryState struct {
	lastSuccess atomic.Int64 // Unix ns of the last successful record
	// stop is done when the whole processor stops (the Runner's context);
	// a session that ends while it is live lost its partition to a
	// rebalance. Nil outside the Runner.
	stop context.Context
}

// ended says why a partition's session ended, for the error of a record
// left uncommitted.
func (s *retryState) ended() string {
	if s.stop == nil || s.stop.Err() != nil {
		return "at shutdown"
	}
	return "the partition was revoked"
}

func (s *retryState) succeeded() { s.lastSuccess.Store(time.Now().UnixNano()) }

// outage reports whether the transient failure err of a record means the
// processor's dependency is down, so that the record waits in place
// (pausing its partition) rather than moving to a retry topic or, spent,
// to the dead-letter topic. It is the one place this is decided. An error
// marked Outage says so itself, whatever the probe answers: a store can
// answer a probe while it refuses every write (a replica of a replicated
// keyspace down). Otherwise Probe answers; without a probe, the main group
// judges from its recent successes, while the companion group (companion
// set), which sees only failing records, cannot tell and takes no outage.
func (p *Processor) outage(ctx context.Context, s *retryState, err error, companion bool) bool {
	if IsOutage(err) {
		return true
	}
	pol := p.retry.policy
	if pol.Probe != nil {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return pol.Probe(pctx) != nil
	}
	if companion {
		return false
	}
	last := s.lastSuccess.Load()
	return last == 0 || time.Since(time.Unix(0, last)) > pol.OutageWindow
}

// toRetry queues raw for retry topic tier (0-based) with its bookkeeping
// headers.
func (c *Context) toRetry(tier int, origin string, raw []byte, attempts int, first time.Time) {
	main := c.proc
	if main.retryOf != nil {
		main = main.retryOf
	}
	tier = min(tier, len(main.retry.tiers)-1)
	hs := retryHeaders(main.retry.policy, tier, c.Headers(), origin, attempts, first)
	c.queueEmit(main.retry.tiers[tier].name, c.Key(), raw, hs)
}

// retryHeaders returns the headers of a record moving to retry topic tier:
// its own headers without the old bookkeeping, and the new bookkeeping.
func retryHeaders(pol RetryPolicy, tier int, own []Header, origin string, attempts int, first time.Time) []Header {
	due := time.Now().Add(pol.Delays[tier])
	var hs []Header
	for _, h := range own {
		switch h.Key {
		case HeaderAttempts, HeaderRetryOrigin, HeaderRetryDue, HeaderFirstFailure:
		default:
			hs = append(hs, h)
		}
	}
	return append(hs,
		Header{Key: HeaderAttempts, Value: []byte(strconv.Itoa(attempts))},
		Header{Key: HeaderRetryOrigin, Value: []byte(origin)},
		Header{Key: HeaderRetryDue, Value: []byte(strconv.FormatInt(due.UnixMilli(), 10))},
		Header{Key: HeaderFirstFailure, Value: []byte(strconv.FormatInt(first.UnixMilli(), 10))},
	)
}

// headerInt reads a decimal header, or def.
func (c *Context) headerInt(key string, def int64) int64 {
	v := c.Header(key)
	if v == nil {
		return def
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil || n < 0 {
		return def
	}
	return n
}

// retryCallback handles records of retry topic tier (0-based) for the
// companion group p: it waits until the record is due, runs the main
// processor's callback for the record's origin topic once, and on a
// transient failure moves it on, or dead-letters it when its attempts are
// spent.
func (p *Processor) retryCallback(tier int, obs observer, state *retryState) goka.ProcessCallback {
	main := p.retryOf
	pol := main.retry.policy
	return func(g goka.Context, msg any) {
		start := time.Now()
		raw, _ := msg.([]byte)
		c := &Context{g: g, proc: p, raw: raw, obs: obs}
		obs.consumed(p.group, string(g.Topic()))
		origin := string(c.Header(HeaderRetryOrigin))
		var in *inputDecl
		for _, x := range main.inputs {
			if x.topic.name == origin {
				in = x
			}
		}
		c.in = in
		first := time.UnixMilli(c.headerInt(HeaderFirstFailure, time.Now().UnixMilli()))
		attempts := int(c.headerInt(HeaderAttempts, 0))
		if in == nil {
			c.attempt = attempts
			c.DeadLetter("bad_retry_record", fmt.Errorf("topology: retried record names unknown origin %q", origin), raw)
			c.flush(envelopeFor(first))
			obs.deadLettered(p.group, "bad_retry_record")
			return
		}
		due := time.UnixMilli(c.headerInt(HeaderRetryDue, 0))
		if wait := time.Until(due); wait > 0 && !sleepCtx(g.Context(), wait) {
			done := g.DeferCommit()
			done(fmt.Errorf("%w %s: %s: waiting to retry", errAbandoned, state.ended(), c))
			return
		}
		for {
			c.attempt = attempts + 1
			err := c.invoke(in, raw)
			if err == nil {
				c.flush(envelopeFor(first))
				main.observeOutputs(c, obs)
				state.succeeded()
				break
			}
			c.reset()
			if !IsTransient(err) {
				reason := ReasonOf(err)
				c.DeadLetter(reason, err, raw)
				c.flush(envelopeFor(first))
				obs.deadLettered(p.group, reason)
				break
			}
			obs.retried(p.group)
			if main.outage(g.Context(), state, err, true) {
				// The dependency is down: wait here rather than burn the
				// record's attempts.
				if !sleepCtx(g.Context(), main.backoff.delay(2)) {
					done := g.DeferCommit()
					done(fmt.Errorf("%w %s while retrying: %s: %v", errAbandoned, state.ended(), c, err))
					return
				}
				continue
			}
			if c.attempt >= pol.MaxAttempts {
				c.DeadLetter(ReasonRetriesExhausted, fmt.Errorf("after %d attempts: %w", c.attempt, err), raw)
				c.flush(envelopeFor(first))
				obs.deadLettered(p.group, ReasonRetriesExhausted)
				break
			}
			c.toRetry(tier+1, origin, raw, c.attempt, first)
			c.flush(envelopeFor(first))
			break
		}
		obs.processed(p.group, time.Since(start))
	}
}

var errNoRetryTarget = errors.New("retry topics need a stateless processor (no group table, no loop)")

// finalizeRetries gives each companion retry group the edges of its main
// processor, now that the main processor is fully declared: the retry
// topics as inputs, the main outputs, lookups and joins. It also sizes the
// retry topics like the main processor's inputs. It is idempotent.
func (t *Topology) finalizeRetries() []error {
	var problems []error
	for _, p := range t.procs {
		if p.retry == nil {
			continue
		}
		if p.table != nil || p.loop != nil {
			problems = append(problems, fmt.Errorf("processor %q: %w", p.group, errNoRetryTarget))
		}
		c := p.retry.companion
		c.inputs = c.inputs[:0]
		for _, tier := range p.retry.tiers {
			if len(p.inputs) > 0 {
				tier.partitions = p.inputs[0].topic.partitions
				tier.key = p.inputs[0].topic.key
			}
			c.inputs = append(c.inputs, &inputDecl{topic: tier})
		}
		for _, tier := range p.retry.tiers {
			if !slices.Contains(p.outputs, tier) {
				p.outputs = append(p.outputs, tier)
			}
		}
		c.outputs = append([]*topicDecl(nil), p.outputs...)
		c.lookups = p.lookups
		c.joins = p.joins
	}
	return problems
}
