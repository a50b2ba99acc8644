package topology

import (
	"encoding/binary"
	"fmt"
	"hash"

	"github.com/IBM/sarama"
)

// Partitioner decides which partition of a topic a record's key goes to.
// A stream or table declares it (PartitionedBy); the framework produces
// with it, views read with it, and Validate refuses a group whose
// co-partitioned inputs and tables differ in it, since the same key would
// then live in different partitions of them.
type Partitioner uint8

// The partitioners.
const (
	// GokaHash, the default, places a key as goka's producers, views and
	// lookups do: 32-bit FNV-1a of the key as a signed integer, modulo the
	// partition count, negated when negative (sarama's hash partitioner
	// over Hasher). The ingest edge and every group of the pipeline write
	// with it.
	GokaHash Partitioner = iota
	// Murmur2 is Kafka's default partitioner for keyed records, used by the
	// Java producer, Kafka Connect and kcat (-X partitioner=murmur2):
	// murmur2 of the key bytes with its sign bit cleared, modulo the
	// partition count. Declare it on topics that such producers write.
	Murmur2
)

// String returns the partitioner's name: "goka" or "murmur2".
func (p Partitioner) String() string {
	switch p {
	case GokaHash:
		return "goka"
	case Murmur2:
		return "murmur2"
	}
	return fmt.Sprintf("partitioner(%d)", uint8(p))
}

// Partition returns the partition of key among n partitions.
func (p Partitioner) Partition(key []byte, n int32) int32 {
	if n <= 0 {
		return 0
	}
	if p == Murmur2 {
		return int32(murmur2Positive(key) % uint32(n))
	}
	return partitionOf(string(key), n)
}

// NewHash returns the key hash that sarama's hash partitioner and goka's
// views place keys with, as p does (for producers beside the Runner: see
// kafkaclient.ProducerConfigFor). Murmur2's has the sign bit cleared
// already, so the negation both apply to a negative hash never happens
// and their modulo is Kafka's.
func (p Partitioner) NewHash() hash.Hash32 {
	if p == Murmur2 {
		return &murmur2Hash{}
	}
	return Hasher()
}

func (p Partitioner) hasher() func() hash.Hash32 { return p.NewHash }

// partitionOf is Partition of a string key, without allocating for
// GokaHash.
func (p Partitioner) partitionOf(key string, n int32) int32 {
	if p == Murmur2 {
		return p.Partition([]byte(key), n)
	}
	return partitionOf(key, n)
}

// PartitionedBy declares the partitioner of a stream or table (default
// GokaHash).
func PartitionedBy(p Partitioner) TopicOption { return func(d *topicDecl) { d.partitioner = p } }

// Partitioner returns the stream's declared partitioner.
func (s Stream[V]) Partitioner() Partitioner {
	if s.decl == nil {
		return GokaHash
	}
	return s.decl.partitioner
}

// Partitioner returns the table's declared partitioner.
func (t Table[V]) Partitioner() Partitioner { return t.decl.partitioner }

// PartitionerOf returns the declared partitioner of a topic of t (the
// default for a topic t does not know).
func (t *Topology) PartitionerOf(topic string) Partitioner {
	if d, ok := t.topics[topic]; ok {
		return d.partitioner
	}
	return GokaHash
}

// partitioners returns the topics of t that a partitioner other than the
// default places, for the producers.
func (t *Topology) partitioners() map[string]Partitioner {
	out := map[string]Partitioner{}
	for name, d := range t.topics {
		if d.partitioner != GokaHash {
			out[name] = d.partitioner
		}
	}
	return out
}

// byTopicPartitioner returns a sarama partitioner constructor that places
// the records of each topic by its partitioner in parts (hasher for the
// others).
func byTopicPartitioner(parts map[string]Partitioner, hasher func() hash.Hash32) sarama.PartitionerConstructor {
	return func(topic string) sarama.Partitioner {
		if p, ok := parts[topic]; ok {
			return sarama.NewCustomHashPartitioner(p.hasher())(topic)
		}
		return sarama.NewCustomHashPartitioner(hasher)(topic)
	}
}

// checkPartitioners reports a problem when the co-partitioned topics of p
// (inputs, joined tables, its own table) differ in partitioner, or when p
// looks up a table that is not placed by the default partitioner (goka
// finds a lookup's key with the group's hash).
func checkPartitioners(p *Processor, copart []*topicDecl) []error {
	var problems []error
	for i := 1; i < len(copart); i++ {
		if d, ref := copart[i], copart[0]; d.partitioner != ref.partitioner {
			problems = append(problems, fmt.Errorf("processor %q: %s %q is partitioned by %s but %s %q by %s; co-partitioned topics (inputs, joins, the group table) need the same partitioner",
				p.group, d.kind, d.name, d.partitioner, ref.kind, ref.name, ref.partitioner))
		}
	}
	for _, l := range p.lookups {
		if l.partitioner != GokaHash {
			problems = append(problems, fmt.Errorf("processor %q looks up table %q, partitioned by %s: a lookup finds keys by the %s partitioner; declare the table with it or join it",
				p.group, l.name, l.partitioner, GokaHash))
		}
	}
	return problems
}

// murmur2Hash is Murmur2 as a hash.Hash32 (what sarama and goka take),
// over the bytes written since the last Reset.
type murmur2Hash struct{ buf []byte }

func (h *murmur2Hash) Write(p []byte) (int, error) { h.buf = append(h.buf, p...); return len(p), nil }
func (h *murmur2Hash) Sum(b []byte) []byte {
	return binary.BigEndian.AppendUint32(b, h.Sum32())
}
func (h *murmur2Hash) Reset()         { h.buf = h.buf[:0] }
func (h *murmur2Hash) Size() int      { return 4 }
func (h *murmur2Hash) BlockSize() int { return 4 }

// Sum32 returns murmur2 of the bytes written, sign bit cleared.
func (h *murmur2Hash) Sum32() uint32 { return murmur2Positive(h.buf) }

func murmur2Positive(key []byte) uint32 { return murmur2(key) & 0x7fffffff }

// murmur2 is the 32-bit MurmurHash2 of Austin Appleby as Apache Kafka's
// clients compute it for partitioning (org.apache.kafka.common.utils.
// Utils.murmur2, used by the producer's built-in partitioner as
// toPositive(murmur2(key)) % partitions): seed 0x9747b28c, multiplier
// 0x5bd1e995, shift 24, the key read as little-endian 32-bit words, the
// last 1-3 bytes mixed in before the final avalanche (shifts 13 and 15).
func murmur2(data []byte) uint32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	h := uint32(seed) ^ uint32(len(data))
	whole := len(data) &^ 3
	for i := 0; i < whole; i += 4 {
		k := binary.LittleEndian.Uint32(data[i:])
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch tail := data[whole:]; len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
