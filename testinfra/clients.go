package testinfra

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/IBM/sarama"
	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/watershed-io/watershed/testinfra/probe"
)

// SaramaConfig returns a sarama configuration that works against the test
// broker (Apache Kafka 4.1): the protocol version is set to
// probe.KafkaVersion, since Kafka 4 no longer answers the old request
// versions that sarama's default version uses.
func SaramaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.ClientID = "watershed-test"
	cfg.Version = probe.KafkaVersion
	cfg.Metadata.Retry.Backoff = 100 * time.Millisecond
	return cfg
}

// CreateTopic creates a topic with a unique name and the given number of
// partitions (replication factor 1) through sarama's ClusterAdmin, waits
// until its metadata shows every partition with a leader, and deletes it
// when the test ends. It returns the topic's name.
func CreateTopic(t testing.TB, brokers []string, partitions int32) string {
	t.Helper()
	topic := TopicName(t)
	admin, err := sarama.NewClusterAdmin(brokers, SaramaConfig())
	if err != nil {
		t.Fatalf("testinfra: cluster admin for %v: %v", brokers, err)
	}
	t.Cleanup(func() {
		if err := admin.DeleteTopic(topic); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			t.Logf("testinfra: deleting topic %s: %v", topic, err)
		}
		_ = admin.Close()
	})
	detail := &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}
	if err := admin.CreateTopic(topic, detail, false); err != nil {
		t.Fatalf("testinfra: creating topic %s: %v", topic, err)
	}
	Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		meta, err := admin.DescribeTopics([]string{topic})
		if err != nil {
			return err
		}
		if len(meta) != 1 || meta[0].Err != sarama.ErrNoError {
			return fmt.Errorf("topic %s not described yet: %+v", topic, meta)
		}
		if got := int32(len(meta[0].Partitions)); got != partitions {
			return fmt.Errorf("topic %s has %d of %d partitions", topic, got, partitions)
		}
		for _, p := range meta[0].Partitions {
			if p.Leader < 0 {
				return fmt.Errorf("topic %s partition %d has no leader yet", topic, p.ID)
			}
		}
		return nil
	})
	return topic
}

// CassandraSession opens a gocql session on hosts (consistency ONE, the
// settings of probe.CassandraCluster), optionally bound to keyspace, and
// closes it when the test ends.
func CassandraSession(t testing.TB, hosts []string, keyspace string) *gocql.Session {
	t.Helper()
	cluster := probe.CassandraCluster(hosts...)
	cluster.Timeout = 20 * time.Second // DDL on a busy 2-core machine
	cluster.Keyspace = keyspace
	session, err := cluster.CreateSession()
	if err != nil {
		t.Fatalf("testinfra: cassandra session on %v (keyspace %q): %v", hosts, keyspace, err)
	}
	t.Cleanup(session.Close)
	return session
}

// CreateKeyspace creates a keyspace with a unique name (SimpleStrategy,
// replication factor 1) and drops it when the test ends. It returns the
// keyspace's name.
func CreateKeyspace(t testing.TB, hosts []string) string {
	t.Helper()
	keyspace := KeyspaceName(t)
	admin := CassandraSession(t, hosts, "")
	stmt := fmt.Sprintf("CREATE KEYSPACE %s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}", keyspace)
	if err := admin.Query(stmt).Exec(); err != nil {
		t.Fatalf("testinfra: %s: %v", stmt, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := admin.Query("DROP KEYSPACE IF EXISTS " + keyspace).ExecContext(ctx); err != nil {
			t.Logf("testinfra: dropping keyspace %s: %v", keyspace, err)
		}
	})
	return keyspace
}

// CassandraLogin returns the test node's user and password, from
// WATERSHED_CASSANDRA_USER and WATERSHED_CASSANDRA_PASSWORD (`infra.sh env`),
// for clients that build their own configuration, such as the Cassandra
// store's Options. It fails the test when the user is unset: the test node
// requires a login.
func CassandraLogin(t testing.TB) (user, password string) {
	t.Helper()
	user = os.Getenv(probe.EnvCassandraUser)
	if user == "" {
		t.Fatalf("%s is not set: the test Cassandra node requires a login. Run the test with `make integration`, "+
			"or export the lines of `scripts/infra/infra.sh env`.", probe.EnvCassandraUser)
	}
	return user, os.Getenv(probe.EnvCassandraPassword)
}

// Environment variables of the Kafka listener that requires SASL/SCRAM.
const (
	EnvKafkaSASLBrokers   = "WATERSHED_TEST_KAFKA_SASL_BROKERS"
	EnvKafkaSCRAMUser     = "WATERSHED_TEST_KAFKA_SCRAM_USER"
	EnvKafkaSCRAMPassword = "WATERSHED_TEST_KAFKA_SCRAM_PASSWORD"
)

// KafkaSASL returns the addresses of the test broker's SASL_PLAINTEXT
// listener and the SCRAM user and password it knows (SCRAM-SHA-256 and
// SCRAM-SHA-512), failing the test when they are not set.
func KafkaSASL(t testing.TB) (brokers []string, user, password string) {
	t.Helper()
	brokers = addrsFromEnv(t, EnvKafkaSASLBrokers, "the real Kafka broker's SASL/SCRAM listener")
	user, password = os.Getenv(EnvKafkaSCRAMUser), os.Getenv(EnvKafkaSCRAMPassword)
	if user == "" || password == "" {
		t.Fatalf("%s and %s are not set; export the lines of `scripts/infra/infra.sh env`", EnvKafkaSCRAMUser, EnvKafkaSCRAMPassword)
	}
	return brokers, user, password
}
