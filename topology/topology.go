package topology

import (
	"fmt"
	"reflect"
	"sort"
	"sync"

	"github.com/watershed-io/watershed/topology/codec"
	"github.com/watershed-io/watershed/topology/deadletter"
)

// Codec encodes and decodes the values of a topic: see codec.Codec. Every
// typed edge of a topology carries one.
type Codec[T any] = codec.Codec[T]

// DefaultPartitions is the partition count of a topic whose declaration does
// not name one.
const DefaultPartitions = 8

// Topology is one declared application: its topics, its processor groups,
// and the edges between them. Declare everything first, then Build (or
// Validate, the Runner or the test driver, which build it), then run any
// subset of its groups.
//
// A Topology is not safe for concurrent declaration; once declared it is
// read-only and may be shared.
type Topology struct {
	name       string
	prefix     string
	topics     map[string]*topicDecl
	topicOrder []string
	procs      []*Processor
	deadLetter string
	dlqOpts    []TopicOption
	// declErrs collects mistakes found while declaring (such as a topic
	// declared twice), so that declaration reads as straight-line code and
	// Validate reports every problem at once.
	declErrs []error
	// sealed is set by Build: later declarations are ignored and kept in
	// lateErrs. built or buildErr is Build's outcome. buildMu serializes
	// Build, which Validate, Describe and EnsureTopics call.
	buildMu  sync.Mutex
	sealed   bool
	lateErrs []error
	built    *Plan
	buildErr error
}

// Option configures a Topology.
type Option func(*Topology)

// WithPrefix prefixes every topic and group name, so that several
// installations can share one Kafka cluster. "acme." turns the topic
// telemetry.raw into acme.telemetry.raw.
func WithPrefix(prefix string) Option { return func(t *Topology) { t.prefix = prefix } }

// WithDeadLetterTopic names the dead-letter topic (before the prefix; the
// default is "<name>.dlq") and sets its options, such as its partitions and
// key when a processor consumes it co-partitioned with a table. Envelopes
// are keyed by the key of the record that failed.
func WithDeadLetterTopic(name string, opts ...TopicOption) Option {
	return func(t *Topology) {
		if name != "" {
			t.deadLetter = name
		}
		t.dlqOpts = opts
	}
}

// New starts the declaration of a topology called name.
func New(name string, opts ...Option) *Topology {
	t := &Topology{name: name, topics: map[string]*topicDecl{}}
	for _, o := range opts {
		o(t)
	}
	if t.deadLetter == "" {
		t.deadLetter = name + ".dlq"
	}
	t.deadLetter = t.prefix + t.deadLetter
	d := &topicDecl{
		name:       t.deadLetter,
		kind:       kindStream,
		valueType:  typeName[deadletter.Envelope](),
		codecName:  codecName(deadletter.Codec{}),
		key:        "key",
		partitions: DefaultPartitions,
		deadLetter: true,
	}
	for _, o := range t.dlqOpts {
		o(d)
	}
	t.addTopic(d)
	return t
}

// Name returns the topology's name.
func (t *Topology) Name() string { return t.name }

// DeadLetterTopic returns the full name of the dead-letter topic.
func (t *Topology) DeadLetterTopic() string { return t.deadLetter }

// DeadLetters returns the dead-letter topic as a stream, so that a
// processor can consume the envelopes (every processor produces to it).
func (t *Topology) DeadLetters() Stream[deadletter.Envelope] {
	return Stream[deadletter.Envelope]{t: t, decl: t.topics[t.deadLetter], codec: deadletter.Codec{}}
}

// Processors returns the declared processor groups in declaration order.
func (t *Topology) Processors() []*Processor { return append([]*Processor(nil), t.procs...) }

// Groups returns the names of the processor groups in declaration order.
func (t *Topology) Groups() []string {
	out := make([]string, len(t.procs))
	for i, p := range t.procs {
		out[i] = p.group
	}
	return out
}

// Topics returns the names of every topic of the topology, sorted.
func (t *Topology) Topics() []string {
	out := append([]string(nil), t.topicOrder...)
	sort.Strings(out)
	return out
}

// Partitions returns the declared partition count of a topic, or 0 when the
// topology does not know the topic.
func (t *Topology) Partitions(topic string) int32 {
	if d, ok := t.topics[topic]; ok {
		return d.partitions
	}
	return 0
}

type topicKind int

const (
	kindStream topicKind = iota
	kindTable
	kindLoop
	// kindState is a changelog of framework-owned state (windows,
	// timers); kindTicks the topic of a group's wall-clock ticks.
	kindState
	kindTicks
)

func (k topicKind) String() string {
	switch k {
	case kindTable:
		return "table"
	case kindLoop:
		return "loop"
	case kindState:
		return "state"
	case kindTicks:
		return "ticks"
	default:
		return "stream"
	}
}

// topicDecl is what the topology knows of one topic.
type topicDecl struct {
	name       string
	kind       topicKind
	valueType  string
	codecName  string
	key        string
	partitions int32
	external   string // who produces it outside the topology ("" = a processor)
	owner      string // for tables and loops: the group that writes it
	deadLetter bool
	retention  string // free text for the plan, e.g. "compact"
	// recordTime is the stream's RecordTime[V] (see Stream.TimedBy), nil
	// for the Kafka timestamp.
	recordTime any
	// partitioner places the topic's keys (PartitionedBy).
	partitioner Partitioner
	// retentionMs, when set, is the topic's retention.ms (a windows
	// changelog is compacted and deleted after it; see state.go).
	retentionMs int64
}

func (t *Topology) addTopic(d *topicDecl) {
	if prev, ok := t.topics[d.name]; ok {
		t.declErrs = append(t.declErrs, fmt.Errorf("topic %q declared twice (as a %s of %s and as a %s of %s)",
			d.name, prev.kind, prev.valueType, d.kind, d.valueType))
		return
	}
	t.topics[d.name] = d
	t.topicOrder = append(t.topicOrder, d.name)
}

func typeName[V any]() string {
	return reflect.TypeFor[V]().String()
}

func codecName(c any) string {
	if c == nil {
		return "<nil>"
	}
	return reflect.TypeOf(c).String()
}

// TopicOption configures a declared stream.
type TopicOption func(*topicDecl)

// WithPartitions sets a topic's partition count.
func WithPartitions(n int32) TopicOption { return func(d *topicDecl) { d.partitions = n } }

// KeyedBy names what a topic's keys are (such as "device_id"). Inputs that
// are co-partitioned with a group table must be keyed by the same thing.
func KeyedBy(key string) TopicOption { return func(d *topicDecl) { d.key = key } }

// External declares that the topic is produced outside the topology, by the
// named party (such as "ingest edge"), so that consuming it is not an error.
func External(producer string) TopicOption { return func(d *topicDecl) { d.external = producer } }

// Stream is a declared topic whose values are of type V. It is created by
// NewStream and shared by the processors that produce and consume it, so
// that their codecs agree by construction.
type Stream[V any] struct {
	t     *Topology
	decl  *topicDecl
	codec Codec[V]
}

// NewStream declares a topic (named before the prefix) carrying values of
// type V encoded by codec.
func NewStream[V any](t *Topology, name string, codec Codec[V], opts ...TopicOption) Stream[V] {
	d := &topicDecl{
		name:       t.prefix + name,
		kind:       kindStream,
		valueType:  typeName[V](),
		codecName:  codecName(codec),
		key:        "key",
		partitions: DefaultPartitions,
	}
	for _, o := range opts {
		o(d)
	}
	if !t.open("stream %q", d.name) {
		return Stream[V]{t: t, decl: d, codec: codec}
	}
	if codec == nil {
		t.declErrs = append(t.declErrs, fmt.Errorf("stream %q has no codec", d.name))
	}
	t.addTopic(d)
	return Stream[V]{t: t, decl: d, codec: codec}
}

// Name returns the full topic name.
func (s Stream[V]) Name() string { return s.decl.name }

func (s Stream[V]) topicName() string {
	if s.decl == nil {
		return "<undeclared>"
	}
	return s.decl.name
}

// Codec returns the stream's value codec.
func (s Stream[V]) Codec() Codec[V] { return s.codec }

// Table is a group table of type V: the compacted topic "<group>-table"
// written by one processor group and readable by others through lookups,
// joins and views.
type Table[V any] struct {
	decl  *topicDecl
	codec Codec[V]
	group string
}

// Name returns the full topic name of the table.
func (t Table[V]) Name() string { return t.decl.name }

// Codec returns the table's value codec.
func (t Table[V]) Codec() Codec[V] { return t.codec }

// Partitions returns the table's partition count.
func (t Table[V]) Partitions() int32 { return t.decl.partitions }
