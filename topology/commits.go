package topology

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
)

// Ordered commits.
//
// goka marks a record's offset as soon as that record's own emits and table
// writes are acknowledged, and a partition's committed offset only moves
// forward: a later record finishing first would commit past an earlier one
// whose emit failed, and that record would never be processed again. The
// Runner therefore hands goka a consumer group whose sessions hold each
// mark back until every earlier record of the partition is settled.
//
// Every callback registers its record as pending before it runs (goka runs a
// partition's callbacks one at a time, in offset order). goka's mark of a
// record settles it; a mark forwards to sarama only the contiguous settled
// prefix: the lowest offset still pending, or, when none is, the highest
// mark seen. A mark of a record that never registered (goka marks records
// with a nil value without a callback) settles nothing but itself. A
// record that fails stays pending, so the partition commits nothing past it
// until its session ends and a new one processes it again.

// orderedGroup is a sarama consumer group whose sessions commit in order,
// and, with dl, write each dead letter once (see deadonce.go).
type orderedGroup struct {
	sarama.ConsumerGroup
	dl *deadLetterLog
	// time, when set, is rebuilt for each session (see state.go).
	time *timeRuntime
}

// commitsKey is the context key of a session's commitTracker: the contexts
// goka gives callbacks derive from the session's.
type commitsKey struct{}

// Consume runs one session: its tracker lives as long as it does, so each
// session starts with none pending.
func (g orderedGroup) Consume(ctx context.Context, topics []string, h sarama.ConsumerGroupHandler) error {
	tr := &commitTracker{parts: map[topicPartition]*partCommits{}, dl: g.dl}
	return g.ConsumerGroup.Consume(context.WithValue(ctx, commitsKey{}, tr), topics, &orderedHandler{h: h, tr: tr, g: g})
}

type orderedHandler struct {
	h    sarama.ConsumerGroupHandler
	tr   *commitTracker
	sess *orderedSession
	g    orderedGroup
}

func (o *orderedHandler) Setup(s sarama.ConsumerGroupSession) error {
	o.sess = &orderedSession{ConsumerGroupSession: s, tr: o.tr}
	if t := o.g.time; t != nil && o.g.dl != nil {
		if err := t.setup(s, o.g.dl); err != nil {
			return stateSetupError(s.Context(), o.g.dl.group, err)
		}
	}
	if dl := o.tr.dl; dl != nil {
		if err := dl.setup(s, o.tr); err != nil {
			return fmt.Errorf("%w: %s: dead letters not read back: %w", errAbandoned, dl.group, err)
		}
		go dl.raiseFloors(s, o.tr)
	}
	return o.h.Setup(o.sess)
}

func (o *orderedHandler) ConsumeClaim(_ sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	return o.h.ConsumeClaim(o.sess, c)
}

func (o *orderedHandler) Cleanup(sarama.ConsumerGroupSession) error {
	err := o.h.Cleanup(o.sess)
	if t := o.g.time; t != nil {
		t.cleanup()
	}
	return err
}

// orderedSession sends the marks of its handler through its tracker.
type orderedSession struct {
	sarama.ConsumerGroupSession
	tr *commitTracker
}

func (s *orderedSession) MarkOffset(topic string, partition int32, offset int64, metadata string) {
	s.tr.part(topic, partition).mark(s.ConsumerGroupSession, topic, partition, offset, metadata)
}

func (s *orderedSession) MarkMessage(m *sarama.ConsumerMessage, metadata string) {
	s.MarkOffset(m.Topic, m.Partition, m.Offset+1, metadata)
}

type topicPartition struct {
	topic     string
	partition int32
}

// commitTracker holds the pending records of one session's partitions.
type commitTracker struct {
	mu    sync.Mutex
	parts map[topicPartition]*partCommits
	dl    *deadLetterLog // nil: dead letters are not tracked
}

func (t *commitTracker) part(topic string, partition int32) *partCommits {
	k := topicPartition{topic, partition}
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.parts[k]
	if p == nil {
		p = &partCommits{}
		t.parts[k] = p
	}
	return p
}

// partCommits is the commit order of one partition in one session.
type partCommits struct {
	mu sync.Mutex
	// pending are the registered records not all of whose predecessors
	// settled, in offset order from head.
	pending []pendingRecord
	head    int
	// marked is the highest mark seen, forwarded the last one sent on.
	marked, forwarded int64
	// dl, when set, tracks the partition's dead letters and gives its
	// commits their metadata.
	dl *partDeadLetters
}

type pendingRecord struct {
	offset  int64
	settled bool
}

// settled returns the offset below which every record of topic's
// partition settled in this session: it and the records before it had
// their outputs acknowledged (0: none yet).
func (t *commitTracker) settled(topic string, partition int32) int64 {
	p := t.part(topic, partition)
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.forwarded
}

func (p *partCommits) register(offset int64) {
	p.mu.Lock()
	p.pending = append(p.pending, pendingRecord{offset: offset})
	p.mu.Unlock()
}

// mark settles the record before next (a mark names the next offset to
// read) and forwards the settled prefix to s.
func (p *partCommits) mark(s sarama.ConsumerGroupSession, topic string, partition int32, next int64, metadata string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	live := p.pending[p.head:]
	if i, ok := slices.BinarySearchFunc(live, next-1, func(r pendingRecord, off int64) int {
		return int(min(max(r.offset-off, -1), 1))
	}); ok {
		live[i].settled = true
	}
	for p.head < len(p.pending) && p.pending[p.head].settled {
		p.head++
	}
	if p.head == len(p.pending) {
		p.pending, p.head = p.pending[:0], 0
	} else if p.head > 1024 && p.head > len(p.pending)/2 {
		n := copy(p.pending, p.pending[p.head:])
		p.pending, p.head = p.pending[:n], 0
	}
	p.marked = max(p.marked, next)
	upto := p.marked
	if p.head < len(p.pending) {
		upto = min(upto, p.pending[p.head].offset)
	}
	if upto > p.forwarded {
		p.forwarded = upto
		if p.dl != nil {
			metadata = p.dl.metadata(upto)
		}
		s.MarkOffset(topic, partition, upto, metadata)
	}
}

// ordered registers each record of cb's partition as pending before cb runs,
// when the record comes from a session of an orderedGroup (test drivers
// commit as goka does).
func ordered(cb goka.ProcessCallback) goka.ProcessCallback {
	return func(g goka.Context, msg any) {
		if tr, ok := g.Context().Value(commitsKey{}).(*commitTracker); ok {
			tr.part(string(g.Topic()), g.Partition()).register(g.Offset())
		}
		cb(g, msg)
	}
}
