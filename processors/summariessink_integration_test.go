//go:build integration

package processors_test

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"
	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/sinks/cassandra"
	"github.com/watershed-io/watershed/testinfra"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// TestIntegrationSinkStoresSummariesCassandra: on a real Kafka, the sink
// group stores the summaries of telemetry.summaries in a real Cassandra's
// summaries table: a window written twice is one row, a later update of
// it replaces the row.
func TestIntegrationSinkStoresSummariesCassandra(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hosts := testinfra.Cassandra(t)
	user, password := testinfra.CassandraLogin(t)
	store, err := cassandra.Open(ctx, cassandra.Options{Hosts: hosts, Keyspace: testinfra.CreateKeyspace(t, hosts),
		Consistency: gocql.One, Timeout: 20 * time.Second, Username: user, Password: password})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	k := topology.Kafka{Brokers: testinfra.Kafka(t), ClientID: "summaries-sink-test"}
	prefix := testinfra.UniqueName(t, "sm", 40) + "."
	p := processors.New(processors.Config{Prefix: prefix, Partitions: 2, Logger: slog.New(slog.DiscardHandler)})
	if _, err := p.Topology.EnsureTopics(k, topology.TopicOptions{}); err != nil {
		t.Fatal(err)
	}
	_, stop := runReady(t, ctx, p.Topology, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(),
		Groups: []string{processors.GroupSink}, Logger: slog.New(slog.DiscardHandler),
		Resources: []topology.Provided{topology.Provide(processors.Store, sinks.Store(store))}})
	defer stop()

	prod, err := sarama.NewSyncProducer(k.Brokers, kafkaclient.ProducerConfig(k))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	send := func(ss ...records.Summary) {
		for _, s := range ss {
			b, err := records.SummaryCodec{}.Encode(s)
			if err != nil {
				t.Fatal(err)
			}
			key := strconv.FormatUint(s.DeviceID, 10)
			if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: p.Summaries.Name(), Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(b)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	first, other, updated := summary(device, 0, 10), summary(device, 1, 4), summary(device, 0, 11)
	send(first, first, other)
	want := []records.Summary{first, other}
	stored := func() error {
		got, err := store.Summaries(ctx, sinks.SummaryQuery{DeviceID: device})
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got, want) {
			return fmt.Errorf("stored %+v, want %+v", got, want)
		}
		return nil
	}
	testinfra.Eventually(t, 60*time.Second, 100*time.Millisecond, stored)
	send(updated)
	want = []records.Summary{updated, other}
	testinfra.Eventually(t, 60*time.Second, 100*time.Millisecond, stored)
}
