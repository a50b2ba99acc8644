package topology

import (
	"fmt"
	"slices"
	"time"
)

// Handler is a processor's callback for one input record of type V.
//
// Returning nil commits the record's outputs (emits, table writes,
// loopbacks) together. Returning an error discards them and applies the
// processor's failure policy: errors marked Transient are retried with
// backoff; any other error sends the input record to the dead-letter topic
// with a reason (see Reject), and processing goes on.
type Handler[V any] func(c *Context, key string, value V) error

// FailurePolicy says what a processor does with a record whose callback
// fails permanently.
type FailurePolicy int

const (
	// DeadLetter sends the record to the dead-letter topic with its reason
	// and goes on. It is the default.
	DeadLetter FailurePolicy = iota
	// Stop stops the processor with the error, for stages where skipping a
	// record is worse than stopping (the record is not committed and is
	// processed again after a restart).
	Stop
)

// Backoff bounds the in-place retries of transient errors.
type Backoff struct {
	// Initial is the first delay; it doubles after each attempt.
	Initial time.Duration
	// Max caps the delay.
	Max time.Duration
}

// DefaultBackoff returns the retry backoff of a processor that sets none:
// 100ms doubling up to 10s.
func DefaultBackoff() Backoff { return Backoff{Initial: 100 * time.Millisecond, Max: 10 * time.Second} }

func (b Backoff) delay(attempt int) time.Duration {
	d := b.Initial
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	if d > b.Max {
		d = b.Max
	}
	return d
}

// Processor is one declared processor group. Declare its inputs, outputs,
// table, lookups and joins with the package functions (Consume, Output,
// Persist, Lookup, Join, Loop), which keep every edge typed.
type Processor struct {
	t           *Topology
	group       string
	description string
	inputs      []*inputDecl
	outputs     []*topicDecl
	table       *topicDecl
	lookups     []*topicDecl
	joins       []*topicDecl
	loop        *inputDecl
	policy      FailurePolicy
	backoff     Backoff
	retry       *retryDecl
	batch       batchWriter
	// retryOf is set on a companion retry group: the processor whose
	// retried records it handles.
	retryOf *Processor
	// replaysFor are other groups (full names) whose replayed records this
	// group processes as its own.
	replaysFor []string
	// uses names the resources the group needs at run time.
	uses []string
	// time holds the group's framework-owned state: windowed aggregates
	// and timers (nil when it has none; see state.go).
	time *timeDecl
}

type inputDecl struct {
	topic  *topicDecl
	handle func(c *Context, key string, raw []byte) error
	// handlers is the *[]Handler[V] of a stream consumed with Consume
	// (and Aggregate): the callbacks handle runs, in order.
	handlers any
}

// ProcessorOption configures a processor group.
type ProcessorOption func(*Processor)

// WithDescription sets the group's one-line description, printed by
// Topology.Describe.
func WithDescription(text string) ProcessorOption { return func(p *Processor) { p.description = text } }

// OnFailure sets the failure policy for permanent errors.
func OnFailure(policy FailurePolicy) ProcessorOption {
	return func(p *Processor) { p.policy = policy }
}

// TakesReplaysFor makes the group process records replayed for the named
// groups (before the prefix) as if they were replayed for itself. A group
// that runs another group's stage fused into its handler takes that
// stage's replays, so that dead letters written before a change of fusion
// are not skipped as meant for a group that no longer runs.
func TakesReplaysFor(groups ...string) ProcessorOption {
	return func(p *Processor) {
		for _, g := range groups {
			p.replaysFor = append(p.replaysFor, p.t.prefix+g)
		}
	}
}

// replayedForOther reports whether a record replayed for target is meant
// for another group.
func (p *Processor) replayedForOther(target string) bool {
	return target != p.group && !slices.Contains(p.replaysFor, target)
}

// RetryBackoff sets the backoff of in-place retries of transient errors.
func RetryBackoff(b Backoff) ProcessorOption { return func(p *Processor) { p.backoff = b } }

// Processor declares a processor group named group (before the prefix).
func (t *Topology) Processor(group string, opts ...ProcessorOption) *Processor {
	p := &Processor{t: t, group: t.prefix + group, backoff: DefaultBackoff()}
	for _, o := range opts {
		o(p)
	}
	if !t.open("processor group %q", p.group) {
		return p
	}
	for _, q := range t.procs {
		if q.group == p.group {
			t.declErrs = append(t.declErrs, fmt.Errorf("processor group %q declared twice", p.group))
		}
	}
	t.procs = append(t.procs, p)
	if p.retry != nil {
		t.declareRetry(p)
	}
	return p
}

// is reports whether the callback context belongs to group, or to group's
// companion retry group, which runs group's callbacks.
func (c *Context) is(group string) bool {
	return c.proc.group == group || (c.proc.retryOf != nil && c.proc.retryOf.group == group)
}

// Group returns the processor's full group name.
func (p *Processor) Group() string { return p.group }

// Consume subscribes p to stream s: every record of s is decoded with the
// stream's codec and passed to fn. A record that does not decode goes to
// the dead-letter topic with reason "decode_error".
//
// A group may consume a stream more than once (Consume again, Aggregate,
// in any mix): the record is decoded once and its handlers run in the
// order they were declared, in one callback, sharing its outputs, state
// writes and commit (the first error is the record's, as one handler's
// would be). They share the decoded value too: a handler must not modify
// it.
func Consume[V any](p *Processor, s Stream[V], fn Handler[V]) {
	if !p.t.open("%q consumes %q", p.group, s.topicName()) {
		return
	}
	if s.decl == nil {
		p.t.declErrs = append(p.t.declErrs, fmt.Errorf("processor %q consumes an undeclared stream", p.group))
		return
	}
	if fn == nil {
		p.t.declErrs = append(p.t.declErrs, fmt.Errorf("processor %q consumes %q with no handler", p.group, s.topicName()))
		return
	}
	for _, in := range p.inputs {
		if in.topic != s.decl {
			continue
		}
		hs, ok := in.handlers.(*[]Handler[V])
		if !ok {
			p.t.declErrs = append(p.t.declErrs, fmt.Errorf("processor %q consumes %q as %s and as another type", p.group, s.topicName(), typeName[V]()))
			return
		}
		*hs = append(*hs, fn)
		return
	}
	hs := &[]Handler[V]{fn}
	p.inputs = append(p.inputs, &inputDecl{topic: s.decl, handle: typedHandler(s.decl, s.codec, hs), handlers: hs})
}

func typedHandler[V any](d *topicDecl, codec Codec[V], fns *[]Handler[V]) func(*Context, string, []byte) error {
	return func(c *Context, key string, raw []byte) error {
		v, err := codec.Decode(raw)
		if err != nil {
			return Reject(ReasonDecodeError, err)
		}
		c.observeTime(recordTimeOf(d, key, v, c))
		for _, fn := range *fns {
			if err := fn(c, key, v); err != nil {
				return err
			}
		}
		return nil
	}
}

// Output is a processor's handle for emitting to a stream.
type Output[V any] struct {
	decl  *topicDecl
	codec Codec[V]
	group string
}

// Produce declares that p emits to stream s and returns the handle to emit
// with.
func Produce[V any](p *Processor, s Stream[V]) Output[V] {
	if !p.t.open("%q produces %q", p.group, s.topicName()) {
		return Output[V]{}
	}
	if s.decl == nil {
		p.t.declErrs = append(p.t.declErrs, fmt.Errorf("processor %q produces an undeclared stream", p.group))
		return Output[V]{}
	}
	p.outputs = append(p.outputs, s.decl)
	return Output[V]{decl: s.decl, codec: s.codec, group: p.group}
}

// Emit encodes v and queues it for the stream under key. It is sent when
// the callback returns nil, and the input record is committed only after
// the broker acknowledged it. A record too large for Kafka is refused, and
// the input record then fails with that refusal whatever the callback
// returns (so do Table.Set and Loopback.Send).
func (o Output[V]) Emit(c *Context, key string, v V, headers ...Header) error {
	if o.decl == nil || !c.is(o.group) {
		return fmt.Errorf("topology: emit to %q from %q: the stream is not an output of this processor", o.topicName(), c.proc.group)
	}
	b, err := o.codec.Encode(v)
	if err != nil {
		return fmt.Errorf("topology: encode for %q: %w", o.decl.name, err)
	}
	// A record the producer would refuse fails the group on every
	// restart: refuse it here, so that the input is dead-lettered.
	if err := fits(o.decl.name, key, b, headers); err != nil {
		return c.refuse(err)
	}
	c.queueEmit(o.decl.name, key, b, headers)
	return nil
}

func (o Output[V]) topicName() string {
	if o.decl == nil {
		return "<undeclared>"
	}
	return o.decl.name
}

// Persist gives p a group table of type V, the compacted topic
// "<group>-table". The table is co-partitioned with p's inputs.
func Persist[V any](p *Processor, codec Codec[V], opts ...TopicOption) Table[V] {
	d := &topicDecl{
		name:       p.group + "-table",
		kind:       kindTable,
		valueType:  typeName[V](),
		codecName:  codecName(codec),
		key:        "key",
		partitions: DefaultPartitions,
		owner:      p.group,
		retention:  "compact",
	}
	for _, o := range opts {
		o(d)
	}
	if !p.t.open("%q persists a table", p.group) {
		return Table[V]{decl: d, codec: codec, group: p.group}
	}
	if p.table != nil {
		p.t.declErrs = append(p.t.declErrs, fmt.Errorf("processor %q declares two group tables", p.group))
	}
	p.t.addTopic(d)
	p.table = d
	return Table[V]{decl: d, codec: codec, group: p.group}
}

// Get returns the group table's value for the current record's key,
// including a write made earlier in the same callback.
func (tb Table[V]) Get(c *Context) (V, bool, error) {
	var zero V
	if c.proc.group != tb.group {
		return zero, false, fmt.Errorf("topology: %q reads table %q as its own: use Lookup or Join", c.proc.group, tb.decl.name)
	}
	if err := c.notInTimer(tb.decl.name); err != nil {
		return zero, false, err
	}
	raw, ok, err := c.tableValue()
	if err != nil || !ok {
		return zero, false, err
	}
	v, err := tb.codec.Decode(raw)
	if err != nil {
		return zero, false, fmt.Errorf("topology: decode %q value for key %q: %w", tb.decl.name, c.Key(), err)
	}
	return v, true, nil
}

// Set writes v as the group table's value for the current record's key.
func (tb Table[V]) Set(c *Context, v V) error {
	if c.proc.group != tb.group {
		return fmt.Errorf("topology: %q writes table %q, which belongs to %q", c.proc.group, tb.decl.name, tb.group)
	}
	if err := c.notInTimer(tb.decl.name); err != nil {
		return err
	}
	b, err := tb.codec.Encode(v)
	if err != nil {
		return fmt.Errorf("topology: encode for %q: %w", tb.decl.name, err)
	}
	if err := fits(tb.decl.name, c.Key(), b, nil); err != nil {
		return c.refuse(err)
	}
	c.queueSet(b)
	return nil
}

// Delete removes the group table's value for the current record's key.
func (tb Table[V]) Delete(c *Context) error {
	if c.proc.group != tb.group {
		return fmt.Errorf("topology: %q deletes from table %q, which belongs to %q", c.proc.group, tb.decl.name, tb.group)
	}
	if err := c.notInTimer(tb.decl.name); err != nil {
		return err
	}
	c.queueDelete()
	return nil
}

// LookupTable is a processor's read handle on another group's table, by
// any key.
type LookupTable[V any] struct {
	decl  *topicDecl
	codec Codec[V]
	group string
}

// Lookup declares that p reads table tb by arbitrary keys (a goka lookup:
// every partition of tb is kept locally).
func Lookup[V any](p *Processor, tb Table[V]) LookupTable[V] {
	if !p.t.open("%q looks up a table", p.group) {
		return LookupTable[V]{}
	}
	if tb.decl == nil {
		p.t.declErrs = append(p.t.declErrs, fmt.Errorf("processor %q looks up an undeclared table", p.group))
		return LookupTable[V]{}
	}
	p.lookups = append(p.lookups, tb.decl)
	return LookupTable[V]{decl: tb.decl, codec: tb.codec, group: p.group}
}

// Get returns tb's value for key.
func (l LookupTable[V]) Get(c *Context, key string) (V, bool, error) {
	var zero V
	if l.decl == nil || !c.is(l.group) {
		return zero, false, fmt.Errorf("topology: lookup from %q of a table it did not declare", c.proc.group)
	}
	raw := c.lookup(l.decl.name, key)
	if raw == nil {
		return zero, false, nil
	}
	v, err := l.codec.Decode(raw)
	if err != nil {
		return zero, false, fmt.Errorf("topology: decode %q value for key %q: %w", l.decl.name, key, err)
	}
	return v, true, nil
}

// JoinedTable is a processor's read handle on a co-partitioned table, by
// the current record's key.
type JoinedTable[V any] struct {
	decl  *topicDecl
	codec Codec[V]
	group string
}

// Join declares that p reads table tb by the current record's key; tb must
// be co-partitioned with p's inputs.
func Join[V any](p *Processor, tb Table[V]) JoinedTable[V] {
	if !p.t.open("%q joins a table", p.group) {
		return JoinedTable[V]{}
	}
	if tb.decl == nil {
		p.t.declErrs = append(p.t.declErrs, fmt.Errorf("processor %q joins an undeclared table", p.group))
		return JoinedTable[V]{}
	}
	p.joins = append(p.joins, tb.decl)
	return JoinedTable[V]{decl: tb.decl, codec: tb.codec, group: p.group}
}

// Get returns the joined table's value for the current record's key.
func (j JoinedTable[V]) Get(c *Context) (V, bool, error) {
	var zero V
	if j.decl == nil || !c.is(j.group) {
		return zero, false, fmt.Errorf("topology: join from %q of a table it did not declare", c.proc.group)
	}
	if err := c.notInTimer(j.decl.name); err != nil {
		return zero, false, err
	}
	raw := c.join(j.decl.name)
	if raw == nil {
		return zero, false, nil
	}
	v, err := j.codec.Decode(raw)
	if err != nil {
		return zero, false, fmt.Errorf("topology: decode %q value for key %q: %w", j.decl.name, c.Key(), err)
	}
	return v, true, nil
}

// Loopback is a processor's handle for sending records to other keys of its
// own group table (goka's loop topic "<group>-loop").
type Loopback[V any] struct {
	codec Codec[V]
	group string
}

// Loop declares p's loop topic with values of type V, handled by fn.
func Loop[V any](p *Processor, codec Codec[V], fn Handler[V]) Loopback[V] {
	d := &topicDecl{
		name:       p.group + "-loop",
		kind:       kindLoop,
		valueType:  typeName[V](),
		codecName:  codecName(codec),
		key:        "key",
		partitions: DefaultPartitions,
		owner:      p.group,
	}
	if !p.t.open("%q declares a loop", p.group) {
		return Loopback[V]{codec: codec, group: p.group}
	}
	if p.loop != nil {
		p.t.declErrs = append(p.t.declErrs, fmt.Errorf("processor %q declares two loops", p.group))
	}
	p.t.addTopic(d)
	p.loop = &inputDecl{topic: d, handle: typedHandler(d, codec, &[]Handler[V]{fn})}
	return Loopback[V]{codec: codec, group: p.group}
}

// Send queues v for key on the processor's loop topic.
func (l Loopback[V]) Send(c *Context, key string, v V) error {
	if c.proc.group != l.group {
		return fmt.Errorf("topology: loopback of %q used from %q", l.group, c.proc.group)
	}
	b, err := l.codec.Encode(v)
	if err != nil {
		return fmt.Errorf("topology: encode loop value: %w", err)
	}
	if err := fits(l.group+"-loop", key, b, nil); err != nil {
		return c.refuse(err)
	}
	c.queueLoop(key, b)
	return nil
}
