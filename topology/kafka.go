package topology

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"hash"
	"hash/fnv"
	"time"

	"github.com/IBM/sarama"
	"github.com/watershed-io/watershed/topology/internal/kafkacfg"
)

// Hasher returns the key hash of every topology topic: 32-bit FNV-1a, the
// hash goka's producers, views and lookups assume.
func Hasher() hash.Hash32 { return fnv.New32a() }

// Partition returns the partition of key among n partitions exactly as
// goka's producers place it (sarama's hash partitioner over Hasher).
// Anything that writes to a topic a goka group reads, such as the ingest
// edge, must use it (or a producer of kafkaclient.ProducerConfig) or co-partitioning
// breaks. It is GokaHash's; a topic declared with another partitioner
// (PartitionedBy) is placed by Topology.PartitionerOf(topic).Partition.
func Partition(key []byte, n int32) int32 { return partitionOf(string(key), n) }

// partitionOf is Partition of a string key, without allocating: FNV-1a
// computed inline, as sarama's hash partitioner reduces it.
func partitionOf(key string, n int32) int32 {
	h := uint32(2166136261) // FNV-1a offset basis
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619 // FNV-1a prime
	}
	p := int32(h) % n
	if p < 0 {
		p = -p
	}
	return p
}

// Kafka holds the settings to reach a Kafka cluster, as plain values;
// package topology/kafkaclient builds sarama configurations from them for
// clients beside the Runner.
type Kafka struct {
	// Brokers are the bootstrap addresses.
	Brokers []string
	// Version is the protocol version to speak, such as "3.6.0"; empty
	// means DefaultKafkaVersion.
	Version string
	// ClientID names this process to the brokers.
	ClientID string
	// TLS, when set, encrypts the connections.
	TLS *tls.Config
	// SASL, when its Mechanism is set, logs in with SASL/SCRAM (over TLS
	// when TLS is set; without it the password is safe, SCRAM never sends
	// it, but the records are not).
	SASL SASL
	// Replication is the replication factor of created topics (default 1).
	Replication int16
	// FlushInterval bounds how long a producer batches records
	// (default 10ms; goka's own default is 100ms, which is a latency floor
	// for every hop).
	FlushInterval time.Duration
	// FetchMinBytes and FetchMaxWait, when set, make consumers ask the
	// broker to hold a fetch until that many bytes are ready or that long
	// has passed (default: sarama's, 1 byte and 500ms), trading up to
	// FetchMaxWait of latency per hop for fewer, larger fetches.
	FetchMinBytes int32
	FetchMaxWait  time.Duration
}

// DefaultKafkaVersion is the protocol version spoken when none is set. It
// works with Kafka 2.8 to 4.1 and the embedded broker.
const DefaultKafkaVersion = "3.6.0"

// Record size limits of a topology. The ingest edge accepts packages of up
// to 1,048,612 bytes, which Kafka's default max.message.bytes (1,048,588)
// refuses once the record's key, headers and batch header are added, and a
// package's dead-letter envelope is larger still. So every producer may
// send records up to MaxRecordBytes and every topic EnsureTopics creates
// accepts a batch holding one: TopicMaxMessageBytes leaves room for the
// batch header and compression framing of incompressible data. A
// dead-letter envelope that would not fit in MaxDeadLetterBytes is cut
// down to fit (see Envelope truncation in the dead-letter docs).
const (
	// MaxRecordBytes is the producers' MaxMessageBytes: a record (key,
	// value, headers) larger than this is refused before it is sent.
	MaxRecordBytes = 2 << 20
	// TopicMaxMessageBytes is the max.message.bytes of created topics.
	TopicMaxMessageBytes = MaxRecordBytes + 64<<10
	// CompactedSegmentBytes and CompactedSegmentMs are the segment.bytes
	// and segment.ms of the compacted topics the framework creates (tables
	// and state changelogs). Kafka compacts closed segments only: with its
	// defaults (1 GiB, 7 days) a changelog below a gigabyte is never
	// compacted, and a rebuild reads every version of every key ever
	// written. Smaller segments let the cleaner keep a changelog near
	// one version per key.
	CompactedSegmentBytes = 64 << 20
	CompactedSegmentMs    = 60 * 60 * 1000
	// MaxDeadLetterBytes bounds an encoded dead-letter envelope, below
	// MaxRecordBytes by room for the record's key and framing.
	MaxDeadLetterBytes = MaxRecordBytes - 8<<10
)

// recordFraming is what a Kafka record takes beyond its key, value and
// headers, as sarama's producer counts it against MaxRecordBytes (its
// varint lengths, attributes, timestamp and offset deltas), and
// headerFraming what each header takes beyond its key and value.
const (
	recordFraming = 36
	headerFraming = 10
)

// retryHeaderBytes bounds what the bookkeeping headers of a retry topic add
// to a record (four headers with decimal values).
const retryHeaderBytes = 4 * (32 + 20 + headerFraming)

// recordBytes is the size of a record as the producer counts it against
// MaxRecordBytes.
func recordBytes(key string, value []byte, headers []Header) int {
	n := recordFraming + len(key) + len(value)
	for _, h := range headers {
		n += len(h.Key) + len(h.Value) + headerFraming
	}
	return n
}

// fits returns nil when a record of key, value and headers fits in
// MaxRecordBytes, or a Reject too_large naming topic.
func fits(topic, key string, value []byte, headers []Header) error {
	return fitsBytes(topic, recordBytes(key, value, headers))
}

// fitsBytes is fits of a record of n bytes (recordBytes).
func fitsBytes(topic string, n int) error {
	if n > MaxRecordBytes {
		return Reject(ReasonTooLarge, fmt.Errorf("topology: a record of %d bytes for %q exceeds %d", n, topic, MaxRecordBytes))
	}
	return nil
}

// settings are k's settings for the client configurations.
func (k Kafka) settings() kafkacfg.Settings {
	return kafkacfg.Settings{Version: cmp.Or(k.Version, DefaultKafkaVersion), ClientID: k.ClientID, TLS: k.TLS,
		SASLMechanism: k.SASL.Mechanism, SASLUser: k.SASL.User, SASLPassword: k.SASL.Password, FlushInterval: k.FlushInterval,
		FetchMinBytes: k.FetchMinBytes, FetchMaxWait: k.FetchMaxWait, MaxMessageBytes: MaxRecordBytes}
}

// config is the base sarama configuration of k (see kafkaclient.Config).
func (k Kafka) config() *sarama.Config { return kafkacfg.Config(k.settings()) }

// producerConfig is k's producer configuration (see
// kafkaclient.ProducerConfig).
func (k Kafka) producerConfig() *sarama.Config { return kafkacfg.ProducerConfig(k.settings()) }

func (k Kafka) replication() int16 {
	if k.Replication < 1 {
		return 1
	}
	return k.Replication
}

func (k Kafka) validate() error {
	if len(k.Brokers) == 0 {
		return fmt.Errorf("topology: no Kafka brokers given")
	}
	if _, err := sarama.ParseKafkaVersion(cmp.Or(k.Version, DefaultKafkaVersion)); err != nil {
		return fmt.Errorf("topology: Kafka version %q: %w", k.Version, err)
	}
	return k.SASL.validate()
}
