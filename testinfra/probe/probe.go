// Package probe checks that the real Kafka and Cassandra services used by the
// integration tests answer requests, retrying until a deadline.
//
// A probe succeeds only when the service answers a real protocol request
// (a Kafka metadata request, a CQL query), not merely when its port accepts
// connections. scripts/infra/infra.sh runs these probes through
// testinfra/cmd/probe as its readiness checks.
package probe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/IBM/sarama"
	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// KafkaVersion is the protocol version the project's sarama clients declare
// when they talk to the test broker (Apache Kafka 4.1). Kafka 4 removed the
// oldest request versions (KIP-896), so sarama's default version, which
// still picks some of them, must not be used against it.
var KafkaVersion = sarama.V4_1_0_0

// RetryInterval is the pause between two failed attempts.
const RetryInterval = 500 * time.Millisecond

// AttemptTimeout bounds a single attempt (dial, request and answer).
const AttemptTimeout = 5 * time.Second

// KafkaConfig returns a sarama configuration suited to probing: the project's
// protocol version, short network time-outs and no client-side retries (the
// probe retries by itself).
func KafkaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.ClientID = "watershed-probe"
	cfg.Version = KafkaVersion
	cfg.Net.DialTimeout = AttemptTimeout
	cfg.Net.ReadTimeout = AttemptTimeout
	cfg.Net.WriteTimeout = AttemptTimeout
	cfg.Metadata.Retry.Max = 0
	cfg.Metadata.Full = true
	return cfg
}

// KafkaInfo is what a successful Kafka probe learned about the cluster.
type KafkaInfo struct {
	// Brokers lists the advertised broker addresses.
	Brokers []string
	// ControllerID is the id of the active controller.
	ControllerID int32
	// Topics is the number of topics in the metadata answer.
	Topics int
}

// Kafka sends metadata requests to brokers until one answers with at least
// one broker and a controller, or ctx ends. The error names the addresses,
// the number of attempts and the last failure.
func Kafka(ctx context.Context, brokers []string) (KafkaInfo, error) {
	if len(brokers) == 0 {
		return KafkaInfo{}, errors.New("probe kafka: no broker address given")
	}
	var info KafkaInfo
	err := retry(ctx, "kafka", brokers, func() error {
		var err error
		info, err = kafkaOnce(brokers)
		return err
	})
	return info, err
}

// kafkaOnce makes one metadata request.
func kafkaOnce(brokers []string) (KafkaInfo, error) {
	client, err := sarama.NewClient(brokers, KafkaConfig())
	if err != nil {
		return KafkaInfo{}, err
	}
	defer client.Close()
	if err := client.RefreshMetadata(); err != nil {
		return KafkaInfo{}, fmt.Errorf("metadata request: %w", err)
	}
	var info KafkaInfo
	for _, b := range client.Brokers() {
		info.Brokers = append(info.Brokers, b.Addr())
	}
	if len(info.Brokers) == 0 {
		return KafkaInfo{}, errors.New("metadata answer lists no broker")
	}
	controller, err := client.Controller()
	if err != nil {
		return KafkaInfo{}, fmt.Errorf("no active controller: %w", err)
	}
	info.ControllerID = controller.ID()
	topics, err := client.Topics()
	if err != nil {
		return KafkaInfo{}, fmt.Errorf("topics: %w", err)
	}
	info.Topics = len(topics)
	return info, nil
}

// Environment variables with the test node's credentials, which
// scripts/infra/infra.sh runs Cassandra with (PasswordAuthenticator) and
// prints in `infra.sh env`. The watershed command reads the same names.
const (
	EnvCassandraUser     = "WATERSHED_CASSANDRA_USER"
	EnvCassandraPassword = "WATERSHED_CASSANDRA_PASSWORD"
)

// CassandraCluster returns a gocql cluster configuration for hosts (each
// "host" or "host:port") with the settings the tests use against a single
// local node: consistency ONE, short time-outs, no logging, and the login
// of WATERSHED_CASSANDRA_USER and WATERSHED_CASSANDRA_PASSWORD when set.
func CassandraCluster(hosts ...string) *gocql.ClusterConfig {
	cluster := gocql.NewCluster(hosts...)
	if user := os.Getenv(EnvCassandraUser); user != "" {
		cluster.Authenticator = gocql.PasswordAuthenticator{Username: user, Password: os.Getenv(EnvCassandraPassword)}
	}
	cluster.Consistency = gocql.One
	cluster.Timeout = AttemptTimeout
	cluster.ConnectTimeout = AttemptTimeout
	cluster.NumConns = 1
	cluster.ReconnectionPolicy = &gocql.ConstantReconnectionPolicy{MaxRetries: 1, Interval: RetryInterval}
	cluster.Logger = gocql.NewLogger(gocql.LogLevelNone)
	return cluster
}

// Cassandra runs "SELECT release_version FROM system.local" against hosts
// until it answers, or ctx ends, and returns the server's release version.
func Cassandra(ctx context.Context, hosts []string) (string, error) {
	if len(hosts) == 0 {
		return "", errors.New("probe cassandra: no host address given")
	}
	var version string
	err := retry(ctx, "cassandra", hosts, func() error {
		var err error
		version, err = cassandraOnce(ctx, hosts)
		return err
	})
	return version, err
}

// cassandraOnce opens a session and runs one query.
func cassandraOnce(ctx context.Context, hosts []string) (string, error) {
	session, err := CassandraCluster(hosts...).CreateSession()
	if err != nil {
		return "", fmt.Errorf("session: %w", err)
	}
	defer session.Close()
	qctx, cancel := context.WithTimeout(ctx, AttemptTimeout)
	defer cancel()
	var version string
	if err := session.Query("SELECT release_version FROM system.local").
		WithContext(qctx).Scan(&version); err != nil {
		return "", fmt.Errorf("query system.local: %w", err)
	}
	return version, nil
}

// retry calls once until it succeeds or ctx ends, pausing RetryInterval
// between attempts, and wraps the last failure in a message that names the
// service and its addresses.
func retry(ctx context.Context, service string, addrs []string, once func() error) error {
	start := time.Now()
	attempts := 0
	for {
		attempts++
		err := once()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s at %s not ready after %s (%d attempts): %w",
				service, strings.Join(addrs, ","), time.Since(start).Round(time.Millisecond), attempts, err)
		case <-time.After(RetryInterval):
		}
	}
}

// KafkaController returns the node id of a KRaft cluster's active
// controller: the leader of the metadata quorum, which the brokers at addrs
// report through a DescribeQuorum request (the metadata response's
// controller id names a random broker in KRaft clusters, not this one). It
// retries until an answer names a leader, or ctx ends.
func KafkaController(ctx context.Context, addrs []string) (int32, error) {
	if len(addrs) == 0 {
		return 0, errors.New("probe kafka controller: no broker address given")
	}
	var leader int32
	err := retry(ctx, "kafka controller", addrs, func() error {
		var err error
		leader, err = kafkaControllerOnce(ctx, addrs)
		return err
	})
	return leader, err
}

func kafkaControllerOnce(ctx context.Context, addrs []string) (int32, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.DialTimeout(AttemptTimeout), kgo.RequestRetries(0))
	if err != nil {
		return 0, fmt.Errorf("client: %w", err)
	}
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, AttemptTimeout)
	defer cancel()
	req := kmsg.NewPtrDescribeQuorumRequest()
	topic := kmsg.NewDescribeQuorumRequestTopic()
	topic.Topic = "__cluster_metadata"
	part := kmsg.NewDescribeQuorumRequestTopicPartition()
	topic.Partitions = append(topic.Partitions, part)
	req.Topics = append(req.Topics, topic)
	resp, err := req.RequestWith(rctx, cl)
	if err != nil {
		return 0, fmt.Errorf("describe quorum: %w", err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return 0, fmt.Errorf("describe quorum: %w", err)
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return 0, fmt.Errorf("describe quorum: %w", err)
			}
			if p.LeaderID >= 0 {
				return p.LeaderID, nil
			}
		}
	}
	return 0, errors.New("describe quorum: no leader")
}
