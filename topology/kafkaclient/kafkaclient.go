// Package kafkaclient builds sarama client configurations from a
// topology.Kafka, for the code that talks to a topology's cluster beside
// the Runner: the ingest edge, the tools, tests. The framework's core keeps
// sarama's types out of its API; this package is where they show.
package kafkaclient

import (
	"cmp"

	"github.com/IBM/sarama"

	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/internal/kafkacfg"
)

// settings are k's settings for the configurations.
func settings(k topology.Kafka) kafkacfg.Settings {
	return kafkacfg.Settings{Version: cmp.Or(k.Version, topology.DefaultKafkaVersion), ClientID: k.ClientID, TLS: k.TLS,
		SASLMechanism: k.SASL.Mechanism, SASLUser: k.SASL.User, SASLPassword: k.SASL.Password, FlushInterval: k.FlushInterval,
		FetchMinBytes: k.FetchMinBytes, FetchMaxWait: k.FetchMaxWait, MaxMessageBytes: topology.MaxRecordBytes}
}

// Config returns a fresh base sarama configuration for k (sarama and goka
// builders change the configurations they are given): version, client id,
// TLS, SASL/SCRAM, consumers starting at the oldest offset, goka's
// co-partitioning rebalance strategy.
func Config(k topology.Kafka) *sarama.Config { return kafkacfg.Config(settings(k)) }

// ProducerConfig returns a producer configuration for k that is safe for
// what a caller acknowledges: acks from all in-sync replicas, idempotence
// (which needs one open request per connection), the topology's
// partitioner (topology.Partition), records up to topology.MaxRecordBytes,
// and success and error reporting.
func ProducerConfig(k topology.Kafka) *sarama.Config { return kafkacfg.ProducerConfig(settings(k)) }

// ProducerConfigFor is ProducerConfig for a producer of topics placed by
// p (a topic declared PartitionedBy(p); the Runner's own producers follow
// each topic's declaration by themselves).
func ProducerConfigFor(k topology.Kafka, p topology.Partitioner) *sarama.Config {
	c := ProducerConfig(k)
	c.Producer.Partitioner = sarama.NewCustomHashPartitioner(p.NewHash)
	return c
}
