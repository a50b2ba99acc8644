//go:build integration

package testinfra

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/sinks/cassandra"
	"github.com/watershed-io/watershed/testinfra/probe"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// The broker's SASL_PLAINTEXT listener takes the SCRAM login of
// topology.Kafka for both mechanisms: the client produces with the
// pipeline's producer settings and reads the records back. A wrong
// password, and no login at all, are refused.
func TestIntegrationKafkaSASLSCRAM(t *testing.T) {
	brokers, user, password := KafkaSASL(t)
	topic := CreateTopic(t, Kafka(t), 1)
	for _, mech := range []string{topology.SCRAMSHA256, topology.SCRAMSHA512} {
		t.Run(mech, func(t *testing.T) {
			k := topology.Kafka{Brokers: brokers, Version: probe.KafkaVersion.String(), ClientID: "watershed-sasl-test",
				SASL: topology.SASL{Mechanism: mech, User: user, Password: password}}
			producer, err := sarama.NewSyncProducer(k.Brokers, kafkaclient.ProducerConfig(k))
			if err != nil {
				t.Fatalf("producer with the right password: %v", err)
			}
			value := "over " + mech
			if _, _, err := producer.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("k"), Value: sarama.StringEncoder(value)}); err != nil {
				t.Fatalf("produce: %v", err)
			}
			producer.Close()
			consumer, err := sarama.NewConsumer(k.Brokers, kafkaclient.Config(k))
			if err != nil {
				t.Fatal(err)
			}
			defer consumer.Close()
			pc, err := consumer.ConsumePartition(topic, 0, sarama.OffsetOldest)
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			found := false
			for !found {
				select {
				case m := <-pc.Messages():
					found = string(m.Value) == value
				case <-time.After(30 * time.Second):
					t.Fatalf("the record produced over %s was not read back", mech)
				}
			}

			wrong := k
			wrong.SASL.Password = password + "-wrong"
			if c, err := sarama.NewClient(wrong.Brokers, noRetry(kafkaclient.Config(wrong))); err == nil {
				c.Close()
				t.Error("a wrong password was accepted")
			} else if !errors.Is(err, sarama.ErrSASLAuthenticationFailed) && !errors.Is(err, sarama.ErrOutOfBrokers) {
				t.Errorf("wrong password: %v", err)
			} else {
				t.Logf("wrong password refused: %v", err)
			}
		})
	}
	none := topology.Kafka{Brokers: brokers, Version: probe.KafkaVersion.String()}
	if c, err := sarama.NewClient(none.Brokers, noRetry(kafkaclient.Config(none))); err == nil {
		c.Close()
		t.Error("the SASL listener answered a client without a login")
	}
}

// noRetry makes a failing client give up at once.
func noRetry(c *sarama.Config) *sarama.Config {
	c.Metadata.Retry.Max = 0
	c.Net.DialTimeout = 5 * time.Second
	c.Net.ReadTimeout = 5 * time.Second
	return c
}

// The test node requires a login: the Cassandra store opens (and migrates
// its schema) with the test user, and is refused with a wrong password or
// none, with an error that retries cannot cure.
func TestIntegrationCassandraAuth(t *testing.T) {
	hosts := Cassandra(t)
	user, password := CassandraLogin(t)
	ks := KeyspaceName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := cassandra.Options{Hosts: hosts, Keyspace: ks, Consistency: gocql.One, Timeout: 20 * time.Second,
		Username: user, Password: password}
	st, err := cassandra.Open(ctx, opts)
	if err != nil {
		t.Fatalf("open with the test user: %v", err)
	}
	t.Cleanup(func() {
		admin := CassandraSession(t, hosts, "")
		if err := admin.Query("DROP KEYSPACE IF EXISTS " + ks).Exec(); err != nil {
			t.Logf("drop %s: %v", ks, err)
		}
	})
	if v, err := st.SchemaVersion(ctx); err != nil || v < 1 {
		t.Errorf("schema version %d, %v", v, err)
	}
	st.Close()

	for name, o := range map[string]cassandra.Options{
		"wrong password": {Username: user, Password: password + "-wrong"},
		"no login":       {},
	} {
		o.Hosts, o.Keyspace, o.Consistency, o.Timeout = hosts, ks, gocql.One, 20*time.Second
		o.SkipMigrations = true
		s, err := cassandra.Open(ctx, o)
		if err == nil {
			s.Close()
			t.Errorf("%s: the node accepted the session", name)
			continue
		}
		t.Logf("%s refused: %v", name, err)
		if name == "wrong password" && !isAuthError(err) {
			t.Errorf("%s: %v does not say that the credentials were refused", name, err)
		}
		// A retry cannot cure it: the store says so by its type.
		if !errors.Is(err, cassandra.ErrAuthentication) || errors.Is(err, sinks.ErrUnavailable) || !cassandra.Permanent(err) {
			t.Errorf("%s: %v is not a permanent ErrAuthentication", name, err)
		}
	}
}

// isAuthError reports whether err is the server refusing credentials.
func isAuthError(err error) bool {
	var re gocql.RequestError
	if errors.As(err, &re) && re.Code() == gocql.ErrCodeCredentials {
		return true
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "authentication") || strings.Contains(msg, "username") || strings.Contains(msg, "credentials")
}
