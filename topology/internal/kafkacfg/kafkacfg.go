// Package kafkacfg builds the sarama configurations of a topology's Kafka
// settings, for the framework's core and for package topology/kafkaclient,
// so that neither topology's API nor its settings name sarama's types.
package kafkacfg

import (
	"crypto/tls"
	"fmt"
	"hash"
	"hash/fnv"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/xdg-go/scram"
)

// Settings are a topology.Kafka's client settings, as plain values.
type Settings struct {
	// Version is the protocol version, already defaulted and checked.
	Version  string
	ClientID string
	TLS      *tls.Config
	// SASLMechanism is "SCRAM-SHA-256", "SCRAM-SHA-512" or empty (none).
	SASLMechanism, SASLUser, SASLPassword string
	FlushInterval                         time.Duration
	FetchMinBytes                         int32
	FetchMaxWait                          time.Duration
	// MaxMessageBytes is the producers' limit of a record.
	MaxMessageBytes int
}

// Config returns a fresh base sarama configuration: version, client id,
// TLS, SASL, consumers starting at the oldest offset, goka's
// co-partitioning rebalance strategy.
func Config(k Settings) *sarama.Config {
	c := sarama.NewConfig()
	// The topology refused a version that does not parse.
	c.Version, _ = sarama.ParseKafkaVersion(k.Version)
	if k.ClientID != "" {
		c.ClientID = k.ClientID
	}
	if k.TLS != nil {
		c.Net.TLS.Enable = true
		c.Net.TLS.Config = k.TLS
	}
	applySASL(k, c)
	c.MetricRegistry = discard{} // see discard
	c.Consumer.Return.Errors = true
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.MaxProcessingTime = time.Second
	if k.FetchMinBytes > 0 {
		c.Consumer.Fetch.Min = k.FetchMinBytes
	}
	if k.FetchMaxWait > 0 {
		c.Consumer.MaxWaitTime = k.FetchMaxWait
	}
	c.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{goka.CopartitioningStrategy}
	return c
}

// ProducerConfig returns a producer configuration that is safe for what a
// caller acknowledges: acks from all in-sync replicas, idempotence (which
// needs one open request per connection), the topology's partitioner, and
// success and error reporting.
func ProducerConfig(k Settings) *sarama.Config {
	c := Config(k)
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Idempotent = true
	c.Net.MaxOpenRequests = 1
	c.Producer.Retry.Max = 10
	c.Producer.Retry.Backoff = 100 * time.Millisecond
	c.Producer.Return.Successes = true
	c.Producer.Return.Errors = true
	c.Producer.Partitioner = sarama.NewCustomHashPartitioner(func() hash.Hash32 { return fnv.New32a() })
	c.Producer.Compression = sarama.CompressionSnappy
	c.Producer.Flush.Frequency = k.FlushInterval
	if c.Producer.Flush.Frequency == 0 {
		c.Producer.Flush.Frequency = 10 * time.Millisecond
	}
	c.Producer.Flush.Bytes = 256 * 1024
	c.Producer.MaxMessageBytes = k.MaxMessageBytes
	return c
}

// applySASL sets the SASL settings of c.
func applySASL(k Settings, c *sarama.Config) {
	if k.SASLMechanism == "" {
		return
	}
	c.Net.SASL.Enable = true
	c.Net.SASL.Handshake = true
	c.Net.SASL.User = k.SASLUser
	c.Net.SASL.Password = k.SASLPassword
	hash := scram.SHA256
	c.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
	if k.SASLMechanism == sarama.SASLTypeSCRAMSHA512 {
		hash = scram.SHA512
		c.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
	}
	c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: hash} }
}

// scramClient is sarama's SCRAMClient on github.com/xdg-go/scram: one
// conversation per connection.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

// Begin starts a conversation for the user.
func (c *scramClient) Begin(user, password, authzID string) error {
	client, err := c.hash.NewClient(user, password, authzID)
	if err != nil {
		return fmt.Errorf("kafkacfg: SCRAM client: %w", err)
	}
	c.conv = client.NewConversation()
	return nil
}

// Step answers the server's challenge.
func (c *scramClient) Step(challenge string) (string, error) {
	resp, err := c.conv.Step(challenge)
	if err != nil {
		return "", fmt.Errorf("kafkacfg: SCRAM step: %w", err)
	}
	return resp, nil
}

// Done reports whether the conversation ended.
func (c *scramClient) Done() bool { return c.conv.Done() }
