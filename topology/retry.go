package topology

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
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
// the dead-letter topic with reason "retries_exhausted". Attempts made in
// place during an outage do not count. Under a Runner the companion waits
// for each retry topic partition's records in its own delay queue, so that
// the tiers do not hold each other up.
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
	// clock is the group's stream and wall clock.
	clock *streamClock
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
// spent. Under a Runner (rt set) the record waits in its partition's delay
// queue instead of in the callback, so that a record of a long tier does
// not hold up the due records of the other tiers, which goka hands to the
// same goroutine.
func (p *Processor) retryCallback(tier int, obs observer, state *retryState, rt *retryRuntime) goka.ProcessCallback {
	main := p.retryOf
	return func(g goka.Context, msg any) {
		raw, _ := msg.([]byte)
		c := &Context{g: g, proc: p, raw: raw, obs: obs, clock: state.clock}
		obs.consumed(p.group, string(g.Topic()))
		origin := string(c.Header(HeaderRetryOrigin))
		for _, x := range main.inputs {
			if x.topic.name == origin {
				c.in = x
			}
		}
		first := time.UnixMilli(c.headerInt(HeaderFirstFailure, time.Now().UnixMilli()))
		if c.in == nil {
			c.attempt = int(c.headerInt(HeaderAttempts, 0))
			err := Reject("bad_retry_record", fmt.Errorf("topology: retried record names unknown origin %q", origin))
			v := p.decide(g.Context(), state, obs, failure{err: err, origin: fromRetryTopic, attempt: c.attempt, what: c})
			if v.action == stop {
				g.Fail(v.err)
				// goka returns from Fail during a drain: keep the
				// record uncommitted (see handle).
				g.DeferCommit()(v.err)
				return
			}
			c.DeadLetter(v.reason, v.err, raw)
			c.flush(envelopeFor(first))
			obs.deadLettered(p.group, v.reason)
			return
		}
		due := time.UnixMilli(c.headerInt(HeaderRetryDue, 0))
		if rt != nil {
			c.detached = true
			rt.queue(g).enqueue(&delayed{c: c, done: g.DeferCommit(), due: due, tier: tier, first: first})
			return
		}
		if err := p.retryRecord(g.Context(), c, tier, due, first, obs, state); err != nil {
			done := g.DeferCommit()
			done(err)
		}
	}
}

// retryRecord waits until due, then handles c's record once (see
// retryCallback) and queues its outputs in c. It returns an error only when
// the record must stay uncommitted: ctx ended while it waited.
func (p *Processor) retryRecord(ctx context.Context, c *Context, tier int, due, first time.Time, obs observer, state *retryState) error {
	main := p.retryOf
	if wait := time.Until(due); wait > 0 && !sleepCtx(ctx, wait) {
		return fmt.Errorf("%w %s: %s: waiting to retry", errAbandoned, state.ended(), c)
	}
	start := time.Now()
	attempts := int(c.headerInt(HeaderAttempts, 0))
	origin := c.in.topic.name
	for local := 1; ; local++ {
		c.attempt = attempts + 1
		err := c.invoke(c.in, c.raw)
		if err == nil {
			c.flush(envelopeFor(first))
			main.observeOutputs(c, obs)
			state.succeeded()
			break
		}
		c.reset()
		v := p.decide(ctx, state, obs, failure{err: err, origin: fromRetryTopic, local: local, attempt: c.attempt, tier: tier,
			deadLetterInput: c.in.topic.deadLetter, retryBytes: c.retryBytes(), what: c})
		if v.action == retryInPlace {
			// Only an outage keeps a retried record in place: its
			// attempts are not spent meanwhile.
			if !sleepCtx(ctx, v.wait) {
				return fmt.Errorf("%w %s while retrying: %s: %v", errAbandoned, state.ended(), c, err)
			}
			continue
		}
		if v.action == stop {
			return v.err
		}
		if v.action == toRetryTopic {
			c.toRetry(v.tier, origin, c.raw, c.attempt, first)
		} else if v.action == skip {
			obs.skipped(p.group, v.reason)
		} else {
			c.DeadLetter(v.reason, v.err, c.raw)
			obs.deadLettered(p.group, v.reason)
		}
		c.flush(envelopeFor(first))
		break
	}
	obs.processed(p.group, time.Since(start))
	return nil
}

// retryAckTimeout bounds the wait for the broker's acknowledgement of a
// delayed retry record's outputs; without it the record stays uncommitted.
const retryAckTimeout = 10 * time.Second

// retryQueueMax bounds the records one partition of one retry topic holds
// waiting; a full queue blocks the partition's callbacks (backpressure).
const retryQueueMax = 4096

// retryRuntime holds the delay queues of a companion group under a Runner:
// one per retry topic partition and session, each with a goroutine that
// handles its records in order once due and sends their outputs through
// the runtime's producer.
type retryRuntime struct {
	p       *Processor
	obs     observer
	state   *retryState
	prod    goka.Producer
	running *sync.WaitGroup

	mu     sync.Mutex
	queues map[topicPartition]*delayQueue
}

func newRetryRuntime(p *Processor, obs observer, state *retryState, prod goka.Producer, running *sync.WaitGroup) *retryRuntime {
	return &retryRuntime{p: p, obs: obs, state: state, prod: prod, running: orNew(running), queues: map[topicPartition]*delayQueue{}}
}

// delayed is a retried record waiting in its delay queue; done settles its
// deferred commit.
type delayed struct {
	c     *Context
	done  func(error)
	due   time.Time
	first time.Time
	tier  int
}

// delayQueue holds the records of one retry topic partition, in offset
// order, for one session.
type delayQueue struct {
	rt    *retryRuntime
	ctx   context.Context
	wake  chan struct{}
	mu    sync.Mutex
	cond  *sync.Cond
	items []*delayed
	// failed is the error the queue's records settle with once one
	// failed; only run uses it.
	failed error
}

// queue returns the delay queue of the callback's topic partition in its
// current session, starting it when the partition was (re)assigned.
func (rt *retryRuntime) queue(g goka.Context) *delayQueue {
	ctx := g.Context()
	k := topicPartition{string(g.Topic()), g.Partition()}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	q := rt.queues[k]
	if q == nil || q.ctx != ctx {
		q = &delayQueue{rt: rt, ctx: ctx, wake: make(chan struct{}, 1)}
		q.cond = sync.NewCond(&q.mu)
		rt.queues[k] = q
		onSessionEnd(ctx, &q.mu, q.cond, q.signal)
		rt.running.Go(q.run)
	}
	return q
}

func (q *delayQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// enqueue hands d to the queue, blocking while the queue is full.
func (q *delayQueue) enqueue(d *delayed) {
	q.mu.Lock()
	for len(q.items) >= retryQueueMax && q.ctx.Err() == nil {
		q.cond.Wait()
	}
	if q.ctx.Err() != nil {
		q.mu.Unlock()
		d.done(fmt.Errorf("%w %s: %s: waiting to retry", errAbandoned, q.rt.state.ended(), d.c))
		return
	}
	q.items = append(q.items, d)
	q.mu.Unlock()
	q.signal()
}

// run handles the queue's records in order until the session ends; the
// records left then stay uncommitted.
func (q *delayQueue) run() {
	for {
		q.mu.Lock()
		var d *delayed
		if len(q.items) > 0 {
			d = q.items[0]
		}
		q.mu.Unlock()
		if q.ctx.Err() != nil {
			q.abandon()
			return
		}
		if d == nil {
			select {
			case <-q.wake:
			case <-q.ctx.Done():
			}
			continue
		}
		// After a record failed, the later ones inherit its failure (as
		// in a batch's partition queue): handling them would send their
		// outputs again on the restart that replays them.
		err := q.failed
		if err == nil {
			err = q.rt.p.retryRecord(q.ctx, d.c, d.tier, d.due, d.first, q.rt.obs, q.rt.state)
			if err == nil {
				err = q.send(d.c)
			}
			q.failed = err
		}
		q.mu.Lock()
		q.items = q.items[1:]
		q.cond.Broadcast()
		q.mu.Unlock()
		d.done(err)
	}
}

// abandon leaves every queued record uncommitted.
func (q *delayQueue) abandon() {
	q.mu.Lock()
	items := q.items
	q.items = nil
	q.cond.Broadcast()
	q.mu.Unlock()
	for _, d := range items {
		d.done(fmt.Errorf("%w %s: %s: waiting to retry", errAbandoned, q.rt.state.ended(), d.c))
	}
}

// send produces the outputs c queued and waits for their acknowledgements.
func (q *delayQueue) send(c *Context) error {
	if c.outErr != nil {
		return c.outErr
	}
	if q.ctx.Err() != nil {
		// The partition's next owner may have read its dead letters back
		// already (see deadonce.go): the record stays uncommitted.
		return fmt.Errorf("%w %s: %s: outputs not sent", errAbandoned, q.rt.state.ended(), c)
	}
	for _, e := range c.sent {
		if err := produceAcked(q.rt.prod, q.rt.p.group, e.topic, e.key, e.value, e.headers, retryAckTimeout); err != nil {
			return err
		}
	}
	return nil
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
