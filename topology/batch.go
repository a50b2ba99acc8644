package topology

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/lovoo/goka"
)

// BatchOptions configure a Batcher.
type BatchOptions struct {
	// MaxRows flushes a batch once it holds this many rows (default 1000).
	// A single record's rows are never split.
	MaxRows int
	// MaxWait is how long the first record of a batch waits for more
	// before the batch is written anyway (default 5ms). While a write is
	// under way the next batch gathers regardless.
	MaxWait time.Duration
	// MaxPending bounds the records of one partition that wait for their
	// write (default 256). When it is reached the partition's callbacks
	// block, which pauses consumption: backpressure during an outage.
	MaxPending int
	// WriteTimeout bounds each write, including the last flush when a
	// partition is revoked or the runner stops (default 10s).
	WriteTimeout time.Duration
}

func (o *BatchOptions) defaults() {
	if o.MaxRows < 1 {
		o.MaxRows = 1000
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 5 * time.Millisecond
	}
	if o.MaxPending < 1 {
		o.MaxPending = 256
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
}

// Batcher merges the rows that many records of a partition hand to an
// external store into fewer writes, without weakening what a record's
// commit means: a record's offset commits only after its rows were written,
// and commits stay in offset order per partition.
//
// A callback calls Add with its record's rows and returns Add's result. The
// callback returns at once; the record's commit is deferred until the
// batch holding its rows is written. A failed merged write is split into
// one write per record, and each record's outcome follows the processor's
// policy as if its callback had returned the write's error: Transient
// errors are retried in place (pausing the partition while the dependency
// is down) or moved to the retry topics; any other error sends the record
// to the dead-letter topic with its reason (see Reject).
//
// Batching runs under the Runner. Elsewhere (the retry companion group,
// test drivers) Add writes the rows at once and returns the write's error,
// so that the callback's result is the same.
type Batcher[R any] struct {
	p     *Processor
	opts  BatchOptions
	write func(ctx context.Context, rows []R) error
}

// Batch declares that p writes rows of type R with write, in batches.
// write must be idempotent (a record is written again after a crash before
// its commit) and safe for concurrent use (partitions flush concurrently).
// Its errors mean what a callback's errors mean. A processor has at most
// one Batcher; its records must not be emitted to from the same callback
// that adds rows unless those outputs may be sent before the rows are
// written.
func Batch[R any](p *Processor, opts BatchOptions, write func(ctx context.Context, rows []R) error) *Batcher[R] {
	opts.defaults()
	b := &Batcher[R]{p: p, opts: opts, write: write}
	if !p.t.open("%q declares a batcher", p.group) {
		return b
	}
	if p.batch != nil {
		p.t.declErrs = append(p.t.declErrs, fmt.Errorf("processor %q declares two batchers", p.group))
	}
	if p.table != nil || p.loop != nil {
		p.t.declErrs = append(p.t.declErrs, fmt.Errorf("processor %q: batching needs a stateless processor (no group table, no loop)", p.group))
	}
	p.batch = b
	return b
}

// Add queues rows of the current record for the next batch. The callback
// should return its result and do nothing after it. An empty rows writes
// nothing. Handlers of one record (a stream consumed several times) may
// each add rows: they are written together.
func (b *Batcher[R]) Add(c *Context, rows []R) error {
	if !c.is(b.p.group) {
		return fmt.Errorf("topology: batcher of %q used from %q", b.p.group, c.proc.group)
	}
	if len(rows) == 0 {
		return nil
	}
	if c.q == nil {
		return b.write(c.Context(), rows)
	}
	if c.rows != nil {
		// Several handlers of the record's stream (see Consume) add to
		// one batch entry: the record commits once all its rows are
		// written.
		prev, ok := c.rows.([]R)
		if !ok {
			return fmt.Errorf("topology: %s: two batchers in one callback", c)
		}
		c.rows = append(slices.Clip(prev), rows...)
		c.nrows += len(rows)
		return nil
	}
	c.rows, c.nrows = rows, len(rows)
	return nil
}

func (b *Batcher[R]) options() BatchOptions { return b.opts }

// writeMerged writes the rows of every entry in one call.
func (b *Batcher[R]) writeMerged(ctx context.Context, es []*batchEntry) error {
	n := 0
	for _, e := range es {
		n += e.nrows
	}
	all := make([]R, 0, n)
	for _, e := range es {
		all = append(all, e.rows.([]R)...)
	}
	return b.write(ctx, all)
}

func (b *Batcher[R]) writeOne(ctx context.Context, e *batchEntry) error {
	return b.write(ctx, e.rows.([]R))
}

// batchWriter is the untyped side of a Batcher, for the partition queues.
type batchWriter interface {
	options() BatchOptions
	writeMerged(ctx context.Context, es []*batchEntry) error
	writeOne(ctx context.Context, e *batchEntry) error
}

// recordInfo is what the framework keeps of an input record after its
// callback returned: enough to dead-letter or retry it.
type recordInfo struct {
	group     string
	topic     string
	partition int32
	offset    int64
	key       string
	timestamp time.Time
	headers   []Header
	raw       []byte
	attempt   int
	first     time.Time
}

// String names the record: group, topic, partition, offset and key.
func (r *recordInfo) String() string {
	return fmt.Sprintf("%s %s/%d@%d key=%q", r.group, r.topic, r.partition, r.offset, r.key)
}

// retryBytes is the size of the record as it would go to a retry topic.
func (r *recordInfo) retryBytes() int { return recordBytes(r.key, r.raw, r.headers) + retryHeaderBytes }

// info snapshots the current record.
func (c *Context) info(first time.Time) recordInfo {
	return recordInfo{group: c.proc.group, topic: c.Topic(), partition: c.Partition(), offset: c.Offset(),
		key: c.Key(), timestamp: c.Timestamp(), headers: c.Headers(), raw: c.raw, attempt: c.attempt, first: first}
}

// batchEntry is one record waiting in its partition's queue: with rows to
// write, or none (its outcome is settled and it only waits for its turn to
// commit).
type batchEntry struct {
	done  func(error)
	rows  any
	nrows int
	// err, when set, is the record's final outcome: it is not committed.
	err    error
	rec    recordInfo
	in     *inputDecl
	queued time.Time
}

// batchRuntime holds the partition queues of one processor under a Runner.
type batchRuntime struct {
	p     *Processor
	w     batchWriter
	opts  BatchOptions
	obs   observer
	state *retryState
	prod  goka.Producer
	// running counts the queues' goroutines (the Runner waits for them
	// before closing prod).
	running *sync.WaitGroup

	mu     sync.Mutex
	queues map[int32]*partQueue
}

func newBatchRuntime(p *Processor, obs observer, state *retryState, prod goka.Producer, running *sync.WaitGroup) *batchRuntime {
	return &batchRuntime{p: p, w: p.batch, opts: p.batch.options(), obs: obs, state: state, prod: prod,
		running: orNew(running), queues: map[int32]*partQueue{}}
}

// orNew returns wg, or a new WaitGroup when it is nil (outside a Runner).
func orNew(wg *sync.WaitGroup) *sync.WaitGroup {
	if wg == nil {
		return &sync.WaitGroup{}
	}
	return wg
}

// onSessionEnd wakes a queue's blocked callbacks (cond) and its goroutine
// (signal) when its session ctx ends.
func onSessionEnd(ctx context.Context, mu *sync.Mutex, cond *sync.Cond, signal func()) {
	context.AfterFunc(ctx, func() {
		mu.Lock()
		cond.Broadcast()
		mu.Unlock()
		signal()
	})
}

// queue returns the queue of the callback's partition in its current
// session, starting it when the partition was (re)assigned.
func (rt *batchRuntime) queue(g goka.Context) *partQueue {
	ctx := g.Context()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	q := rt.queues[g.Partition()]
	if q == nil || q.ctx != ctx {
		q = &partQueue{rt: rt, ctx: ctx, wake: make(chan struct{}, 1)}
		q.cond = sync.NewCond(&q.mu)
		rt.queues[g.Partition()] = q
		onSessionEnd(ctx, &q.mu, q.cond, q.signal)
		rt.running.Go(q.run)
	}
	return q
}

// partQueue is the queue of records of one partition (in one session)
// whose commits wait for their writes. One goroutine writes its batches in
// order and calls the records' deferred commits in offset order.
type partQueue struct {
	rt   *batchRuntime
	ctx  context.Context
	wake chan struct{}

	mu      sync.Mutex
	cond    *sync.Cond
	pending []*batchEntry
	rows    int
	closed  bool // the queue took its last entries
	// finished is set once the last entries are settled: a record handed
	// over after closed waits for it.
	finished bool
	// failed, once set, is given to every later record: a record left
	// uncommitted must not be overtaken by a later commit. Only the
	// queue's goroutine sets it, under mu.
	failed error
}

func (q *partQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// enqueue hands the record of c to the queue. err, when set, is the
// record's outcome (left uncommitted); otherwise c's rows, if any, are
// written before it commits. It blocks while the queue is full.
func (q *partQueue) enqueue(c *Context, first time.Time, err error) {
	e := &batchEntry{done: c.g.DeferCommit(), rows: c.rows, nrows: c.nrows, err: err, in: c.in, queued: time.Now()}
	if e.rows != nil {
		e.rec = c.info(first)
	}
	q.mu.Lock()
	for len(q.pending) >= q.rt.opts.MaxPending && !q.closed && q.ctx.Err() == nil {
		q.cond.Wait()
	}
	if q.closed {
		// The queue took its last batch, yet goka handed over one more
		// record of the ended session. Once that batch is settled so is
		// everything before this record, which is settled here, alone:
		// it must not commit past rows whose final write may still fail.
		for !q.finished {
			q.cond.Wait()
		}
		failed := q.failed
		q.mu.Unlock()
		q.late(e, failed)
		return
	}
	q.pending = append(q.pending, e)
	q.rows += e.nrows
	q.mu.Unlock()
	q.signal()
}

// late settles a record that arrived after the queue closed: failed is
// the failure of an earlier record, if any. With none its rows are written
// inline and it commits, in order since every earlier record is settled;
// if the write fails it stays uncommitted, like the last batch.
func (q *partQueue) late(e *batchEntry, failed error) {
	switch {
	case failed != nil:
		e.done(failed)
	case e.err != nil:
		e.done(e.err)
	case e.rows == nil:
		e.done(nil)
	default:
		err := q.write(func(ctx context.Context) error { return q.rt.w.writeOne(ctx, e) })
		if err != nil {
			e.done(fmt.Errorf("%w: %s/%d@%d: not written when %s: %w", errAbandoned, e.rec.topic, e.rec.partition, e.rec.offset, q.rt.state.ended(), err))
			return
		}
		q.rt.obs.batchWritten(q.rt.p.group, 1, e.nrows)
		q.rt.state.succeeded()
		e.done(nil)
	}
}

// run writes batches until the partition's session ends, then flushes
// what is left once.
func (q *partQueue) run() {
	max := q.rt.opts.MaxRows
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		q.mu.Lock()
		n, rows := len(q.pending), q.rows
		var age time.Duration
		if n > 0 {
			age = time.Since(q.pending[0].queued)
		}
		q.mu.Unlock()
		if q.ctx.Err() != nil {
			q.final()
			return
		}
		if n == 0 || (rows > 0 && rows < max && age < q.rt.opts.MaxWait) {
			wait := time.Hour
			if n > 0 {
				wait = q.rt.opts.MaxWait - age
			}
			timer.Reset(wait)
			select {
			case <-q.wake:
			case <-timer.C:
			case <-q.ctx.Done():
			}
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			continue
		}
		q.process(q.take(max), false)
	}
}

// take removes the entries of the next batch: up to max rows (at least
// one entry), or all when max is 0.
func (q *partQueue) take(max int) []*batchEntry {
	q.mu.Lock()
	defer q.mu.Unlock()
	i, rows := 0, 0
	for i < len(q.pending) && (max == 0 || i == 0 || rows+q.pending[i].nrows <= max) {
		rows += q.pending[i].nrows
		i++
	}
	batch := append([]*batchEntry(nil), q.pending[:i]...)
	q.pending = append(q.pending[:0], q.pending[i:]...)
	q.rows -= rows
	q.cond.Broadcast()
	return batch
}

// final flushes the entries left when the session ends in one write: when
// it succeeds they commit, otherwise they stay uncommitted for the next
// owner of the partition.
func (q *partQueue) final() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.process(q.take(0), true)
	q.mu.Lock()
	q.finished = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

// fail records the failure that every later record of the queue inherits.
func (q *partQueue) fail(err error) {
	q.mu.Lock()
	q.failed = err
	q.mu.Unlock()
}

// process writes a batch and settles its records in order.
func (q *partQueue) process(batch []*batchEntry, last bool) {
	rt := q.rt
	var withRows []*batchEntry
	for _, e := range batch {
		if e.rows != nil && e.err == nil {
			withRows = append(withRows, e)
		}
	}
	merged := len(withRows) == 0
	if !merged && q.failed == nil {
		merged = q.write(func(ctx context.Context) error { return rt.w.writeMerged(ctx, withRows) }) == nil
		if merged {
			rows := 0
			for _, e := range withRows {
				rows += e.nrows
			}
			rt.obs.batchWritten(rt.p.group, len(withRows), rows)
			rt.state.succeeded()
		}
	}
	for _, e := range batch {
		switch {
		case q.failed != nil:
			e.done(q.failed)
		case e.err != nil:
			q.fail(e.err)
			e.done(e.err)
		case e.rows == nil || merged:
			e.done(nil)
		case last || q.ctx.Err() != nil:
			// The session ended: no time to split the batch. Its records
			// stay uncommitted for the next owner of the partition,
			// which writes them again.
			q.fail(fmt.Errorf("%w: %s/%d@%d: not written when %s", errAbandoned, e.rec.topic, e.rec.partition, e.rec.offset, q.rt.state.ended()))
			e.done(q.failed)
		default:
			if err := q.settle(e); err != nil {
				q.fail(err)
				e.done(err)
				continue
			}
			e.done(nil)
		}
	}
}

// write runs one write with the write timeout. Writes are not cancelled
// with the session, so that a revoked partition can still flush.
func (q *partQueue) write(fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(q.ctx), q.rt.opts.WriteTimeout)
	defer cancel()
	return fn(ctx)
}

// settle writes one record's rows alone, with the processor's failure
// policy, as the callback wrapper would handle the callback's error. It
// returns an error only when the record must stay uncommitted.
func (q *partQueue) settle(e *batchEntry) error {
	rt, p := q.rt, q.rt.p
	rec := e.rec
	base := rec.attempt - 1
	for local := 1; ; local++ {
		rec.attempt = base + local
		err := q.write(func(ctx context.Context) error { return rt.w.writeOne(ctx, e) })
		if err == nil {
			rt.obs.batchWritten(p.group, 1, e.nrows)
			rt.state.succeeded()
			return nil
		}
		if rec.first.IsZero() {
			rec.first = time.Now()
		}
		v := p.decide(q.ctx, rt.state, rt.obs, failure{err: err, origin: fromBatch, local: local, attempt: rec.attempt,
			deadLetterInput: e.in.topic.deadLetter, retryBytes: rec.retryBytes(), what: &rec})
		switch v.action {
		case retryInPlace:
			if v.outage {
				base-- // an outage's attempts are not the record's own (see handle)
			}
			if sleepCtx(q.ctx, v.wait) {
				continue
			}
			return fmt.Errorf("%w %s while retrying: %s: %v", errAbandoned, rt.state.ended(), &rec, err)
		case toRetryTopic:
			tier := p.retry.tiers[v.tier].name
			return q.produce(tier, rec.key, rec.raw, retryHeaders(p.retry.policy, v.tier, rec.headers, rec.topic, rec.attempt, rec.first))
		case stop:
			return v.err
		case skip:
			rt.obs.skipped(p.group, v.reason)
			return nil
		}
		if !admitDeadLetter(q.ctx, rec.topic, rec.partition, rec.offset, v.reason, v.err, rec.raw) {
			return nil // written before this replay (see deadonce.go)
		}
		b, cut, encErr := newEnvelope(&rec, v.reason, v.err, rec.raw)
		if encErr != nil {
			return encErr
		}
		if cut {
			rt.obs.deadLetterTruncated(p.group)
		}
		if q.ctx.Err() != nil {
			// The partition's next owner may have read its dead letters
			// back already: it decides.
			return fmt.Errorf("%w %s: %s/%d@%d: not dead-lettered", errAbandoned, rt.state.ended(), rec.topic, rec.partition, rec.offset)
		}
		if err := q.produce(p.t.deadLetter, deadLetterKey(rec.key), b, []Header{originHeader(rec.partition)}); err != nil {
			return err
		}
		rt.obs.deadLettered(p.group, v.reason)
		return nil
	}
}

// produce sends a record through the runtime's producer and waits for the
// broker's acknowledgement, so that the input record commits after it. The
// wait is bounded by the write timeout: without an acknowledgement the
// input record stays uncommitted (and its output may be sent twice).
func (q *partQueue) produce(topic, key string, value []byte, headers []Header) error {
	return produceAcked(q.rt.prod, q.rt.p.group, topic, key, value, headers, q.rt.opts.WriteTimeout)
}

// produceAcked sends a record of group through prod and waits up to
// timeout for the broker's acknowledgement.
func produceAcked(prod goka.Producer, group, topic, key string, value []byte, headers []Header, timeout time.Duration) error {
	var h goka.Headers
	if len(headers) > 0 {
		h = make(goka.Headers, len(headers))
		for _, x := range headers {
			h[x.Key] = x.Value
		}
	}
	ack := make(chan error, 1)
	prod.EmitWithHeaders(topic, key, value, h).Then(func(err error) { ack <- err })
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-ack:
		if err != nil {
			return fmt.Errorf("topology: %s: emit to %s: %w", group, topic, err)
		}
		return nil
	case <-t.C:
		return fmt.Errorf("%w: %s: emit to %s: no acknowledgement within %s", errAbandoned, group, topic, timeout)
	}
}
