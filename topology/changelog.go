package topology

import (
	"bytes"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"
)

// A group table's local store must never hold what its table topic does
// not: a replayed record that finds its effect already stored is skipped
// (device-state and dedupe recognise their replays), so a write that
// reached the store but not the topic would never reach the topic, and a
// replica that rebuilds the partition from the topic would miss it.
//
// goka writes the store first and the topic after, and commits the input
// record once the topic acknowledged. When the topic refuses the write, the
// processor fails with the record uncommitted, but the store keeps the
// value; the record is replayed after a restart (in the same process or
// after a crash on the same folder) against a store that is ahead of the
// topic.
//
// A changelog closes that gap for one goka processor. Its storage wrapper
// keeps the table writes a partition makes after recovery in memory
// (reads see them) and writes them to the underlying store only when the
// producer reports the table topic acknowledged them, together with their
// topic offset, in the order the topic acknowledged them. So the store only
// ever holds a prefix of the topic: a refused write is never applied, an
// in-process restart drops the unacknowledged ones with the storage, and a
// crash can lose only acknowledged writes, which recovery reads back from
// the topic since the stored offset does not cover them. goka's own
// SetOffset after an acknowledgement is redundant and ignored; it also
// skips offset 0 and deletions, which the changelog applies like any other
// write.
//
// The producer wrapper sees the acknowledgements: goka emits every table
// write through the processor's producer and runs the promise's callbacks
// in the order they were added, so the changelog's (added inside Emit)
// runs before goka's, which commits the input record.
type changelog struct {
	// topic is the group table's topic, partitions its partition count.
	topic      string
	partitions int32
	// partitioner places the table's keys (the partition whose storage
	// goka writes a key to).
	partitioner Partitioner
	log         *slog.Logger

	// parts holds the open storage of each partition of the table, nil
	// for none.
	parts []atomic.Pointer[changelogStorage]
}

// newChangelog returns the changelog of p's group table, or nil when p has
// none (its builders are then returned unchanged).
func newChangelog(p *Processor, log *slog.Logger) *changelog {
	if p.table == nil {
		return nil
	}
	return &changelog{topic: p.table.name, partitions: p.table.partitions, partitioner: p.table.partitioner, log: log,
		parts: make([]atomic.Pointer[changelogStorage], p.table.partitions)}
}

// storage wraps b: the storages of the group table are changelog storages;
// those of joined tables are b's own.
func (c *changelog) storage(b storage.Builder) storage.Builder {
	if c == nil {
		return b
	}
	return func(topic string, partition int32) (storage.Storage, error) {
		st, err := b(topic, partition)
		if err != nil || topic != c.topic {
			return st, err
		}
		if partition < 0 || partition >= c.partitions {
			return nil, errors.Join(fmt.Errorf("topology: table %s has a partition %d, but %d are declared", topic, partition, c.partitions), st.Close())
		}
		s := &changelogStorage{Storage: st, cl: c, partition: partition, pending: map[string]pendingWrite{}}
		c.parts[partition].Store(s)
		return s, nil
	}
}

// producer wraps b so that the table writes it emits report their outcome
// to the changelog.
func (c *changelog) producer(b goka.ProducerBuilder) goka.ProducerBuilder {
	if c == nil {
		return b
	}
	return func(brokers []string, clientID string, hasher func() hash.Hash32) (goka.Producer, error) {
		prod, err := b(brokers, clientID, hasher)
		if err != nil {
			return nil, err
		}
		return &changelogProducer{Producer: prod, cl: c}, nil
	}
}

// writer returns the open storage of the partition key belongs to, nil
// when none is open.
func (c *changelog) writer(key string) *changelogStorage {
	return c.parts[c.partitioner.partitionOf(key, c.partitions)].Load()
}

func (c *changelog) closed(s *changelogStorage) {
	c.parts[s.partition].CompareAndSwap(s, nil)
}

// changelogProducer is a goka producer whose table writes report to their
// changelog.
type changelogProducer struct {
	goka.Producer
	cl *changelog
}

// Emit sends a record; see EmitWithHeaders.
func (p *changelogProducer) Emit(topic, key string, value []byte) *goka.Promise {
	return p.watch(p.Producer.Emit(topic, key, value), topic, key, value)
}

// EmitWithHeaders sends a record. A write to the group table reports its
// outcome to the changelog before the callbacks goka adds to the promise.
func (p *changelogProducer) EmitWithHeaders(topic, key string, value []byte, headers goka.Headers) *goka.Promise {
	return p.watch(p.Producer.EmitWithHeaders(topic, key, value, headers), topic, key, value)
}

// watch has the outcome of a table write reported to the storage that
// made it: goka emits the write right after storing it, on the partition's
// goroutine, while that storage is open. Should the answer come only once
// that storage is closed, it is dropped: the topic has the write, and the
// next recovery reads it.
func (p *changelogProducer) watch(promise *goka.Promise, topic, key string, value []byte) *goka.Promise {
	if topic != p.cl.topic {
		return promise
	}
	if s := p.cl.writer(key); s != nil {
		promise.ThenWithMessage(func(msg *sarama.ProducerMessage, err error) {
			offset := int64(-1)
			if err == nil && msg != nil {
				offset = msg.Offset
			}
			s.acked(key, value, offset, err)
		})
	}
	return promise
}

// pendingWrite is the newest unacknowledged write of a key and how many of
// the key's writes wait for their acknowledgement.
type pendingWrite struct {
	value   []byte // nil: deleted
	waiting int
}

// Modes of a changelog storage.
const (
	// modeRecovering: goka recovers the partition from the topic; writes
	// go through.
	modeRecovering = iota
	// modeProcessing: the processor writes; writes wait for their
	// acknowledgement.
	modeProcessing
	// modeFollowing: a hot standby's table follows the topic; writes go
	// through.
	modeFollowing
)

// changelogStorage is a goka storage that applies a partition's processor
// writes to the underlying storage only once the table topic acknowledged
// them; see changelog. Its iterators are the underlying storage's: they see
// the acknowledged writes only.
type changelogStorage struct {
	storage.Storage
	cl        *changelog
	partition int32

	mu      sync.Mutex
	mode    int
	pending map[string]pendingWrite
	// offset is the newest table offset in the underlying storage.
	offset int64
	// err is the failure to apply an acknowledged write, returned by
	// every later write so that goka fails the partition, whose restart
	// recovers from the topic.
	err    error
	closed bool
}

// MarkRecovered ends the recovery: from now on the processor writes.
func (s *changelogStorage) MarkRecovered() error {
	if err := s.Storage.MarkRecovered(); err != nil {
		return err
	}
	offset, err := s.Storage.GetOffset(-1)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mode == modeRecovering {
		s.mode, s.offset = modeProcessing, offset
	}
	return nil
}

// GetOffset returns the stored table offset. goka reads it before loading
// from the topic: after the recovery only a hot standby's table does, which
// follows the topic from then on and is never written by the processor.
func (s *changelogStorage) GetOffset(def int64) (int64, error) {
	s.mu.Lock()
	if s.mode == modeProcessing && len(s.pending) == 0 {
		s.mode = modeFollowing
	}
	s.mu.Unlock()
	return s.Storage.GetOffset(def)
}

// SetOffset stores the offset of a table record read from the topic. After
// recovery, goka calls it once the producer acknowledged a write, which
// acked has applied already with its offset.
func (s *changelogStorage) SetOffset(offset int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mode == modeProcessing {
		return s.err
	}
	return s.Storage.SetOffset(offset)
}

// Set writes a value: at once while recovering or following the topic,
// once acknowledged while processing.
func (s *changelogStorage) Set(key string, value []byte) error {
	if value == nil {
		value = []byte{} // a nil value is an empty one, not a deletion
	}
	return s.write(key, value)
}

// Delete deletes a value, when Set would write one.
func (s *changelogStorage) Delete(key string) error { return s.write(key, nil) }

func (s *changelogStorage) write(key string, value []byte) error {
	s.mu.Lock()
	if s.mode != modeProcessing {
		s.mu.Unlock()
		if value == nil {
			return s.Storage.Delete(key)
		}
		return s.Storage.Set(key, value)
	}
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("topology: table %s/%d: write to a closed storage", s.cl.topic, s.partition)
	}
	if s.err != nil {
		return s.err
	}
	w := s.pending[key]
	s.pending[key] = pendingWrite{value: value, waiting: w.waiting + 1}
	return nil
}

// Get returns key's value, its newest write when one waits.
func (s *changelogStorage) Get(key string) ([]byte, error) {
	s.mu.Lock()
	if w, ok := s.pending[key]; ok {
		v := bytes.Clone(w.value)
		s.mu.Unlock()
		return v, nil
	}
	s.mu.Unlock()
	// Only this partition's writer adds pending writes: none of key's can
	// be acknowledged before the read below.
	return s.Storage.Get(key)
}

// Has reports whether key has a value.
func (s *changelogStorage) Has(key string) (bool, error) {
	v, err := s.Get(key)
	return v != nil, err
}

// Close drops the unacknowledged writes and closes the underlying storage.
func (s *changelogStorage) Close() error {
	s.mu.Lock()
	s.closed = true
	clear(s.pending)
	s.mu.Unlock()
	s.cl.closed(s)
	return s.Storage.Close()
}

// acked applies the outcome of a write of key to the table topic: an
// acknowledged write at offset goes to the underlying storage with its
// offset; a refused one (err) is dropped. The idempotent producer (one
// request in flight per broker) reports a partition's acknowledgements in
// offset order, so the storage takes the writes in the topic's order.
func (s *changelogStorage) acked(key string, value []byte, offset int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.mode != modeProcessing {
		return
	}
	if err == nil && s.err == nil {
		s.err = s.apply(key, value, offset)
	}
	// Once no write of key waits, the underlying storage holds its
	// newest acknowledged value, which reads get from then on.
	if w, ok := s.pending[key]; ok {
		if w.waiting--; w.waiting > 0 {
			s.pending[key] = w
		} else {
			delete(s.pending, key)
		}
	}
}

func (s *changelogStorage) apply(key string, value []byte, offset int64) error {
	var err error
	if value == nil {
		err = s.Storage.Delete(key)
	} else {
		err = s.Storage.Set(key, value)
	}
	if err == nil && offset > s.offset {
		err = s.Storage.SetOffset(offset)
	}
	if err != nil {
		err = fmt.Errorf("topology: table %s/%d: write acknowledged at offset %d: %w", s.cl.topic, s.partition, offset, err)
		s.cl.log.Error("storing an acknowledged table write failed; the partition must restart and recover from the topic", "err", err)
		return err
	}
	s.offset = max(s.offset, offset)
	return nil
}

var (
	_ storage.Storage = (*changelogStorage)(nil)
	_ goka.Producer   = (*changelogProducer)(nil)
)
