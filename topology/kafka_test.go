package topology_test

import (
	"fmt"
	"hash"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// The partition of a key must be what goka's producers compute, or records
// written outside goka land where goka's processors do not look.
func TestPartitionMatchesGokaProducers(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	gokaHasher := goka.DefaultHasher()
	for _, n := range []int32{1, 3, 8, 12, 64} {
		part := sarama.NewCustomHashPartitioner(gokaHasher)("t")
		for i := 0; i < 20000; i++ {
			key := strconv.FormatUint(rng.Uint64(), 10)
			want, err := part.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(key)}, n)
			if err != nil {
				t.Fatal(err)
			}
			if got := topology.Partition([]byte(key), n); got != want {
				t.Fatalf("Partition(%q, %d) = %d, goka's producer says %d", key, n, got, want)
			}
			if got, _ := kafkaclient.ProducerConfig(topology.Kafka{}).Producer.Partitioner("t").Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(key)}, n); got != want {
				t.Fatalf("ProducerConfig's partitioner(%q, %d) = %d, want %d", key, n, got, want)
			}
		}
	}
}

// Records produced by goka land on topology.Partition's partition.
func TestGokaEmitterLandsOnPartition(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	admin, err := sarama.NewClusterAdmin(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.CreateTopic("landing", &sarama.TopicDetail{NumPartitions: 6, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	em, err := goka.NewEmitter(k.Brokers, "landing", new(rawString),
		goka.WithEmitterProducerBuilder(func(brokers []string, clientID string, hasher func() hash.Hash32) (goka.Producer, error) {
			cfg := kafkaclient.ProducerConfig(k)
			cfg.Producer.Partitioner = sarama.NewCustomHashPartitioner(hasher)
			return goka.NewProducer(brokers, cfg)
		}))
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := 0; i < n; i++ {
		if err := em.EmitSync(fmt.Sprint(i*7919), "v"); err != nil {
			t.Fatal(err)
		}
	}
	if err := em.Finish(); err != nil {
		t.Fatal(err)
	}
	for _, m := range readAll(t, k, "landing", n, 30*time.Second) {
		if want := topology.Partition(m.Key, 6); m.Partition != want {
			t.Errorf("key %s on partition %d, Partition says %d", m.Key, m.Partition, want)
		}
	}
}

type rawString struct{}

func (rawString) Encode(v any) ([]byte, error) { return []byte(v.(string)), nil }
func (rawString) Decode(b []byte) (any, error) { return string(b), nil }

func TestFetchSettings(t *testing.T) {
	c := kafkaclient.Config(topology.Kafka{})
	if c.Consumer.Fetch.Min != 1 || c.Consumer.MaxWaitTime != 500*time.Millisecond {
		t.Errorf("defaults: fetch min %d, max wait %v; want sarama's 1 and 500ms", c.Consumer.Fetch.Min, c.Consumer.MaxWaitTime)
	}
	c = kafkaclient.Config(topology.Kafka{FetchMinBytes: 64 << 10, FetchMaxWait: 10 * time.Millisecond})
	if c.Consumer.Fetch.Min != 64<<10 || c.Consumer.MaxWaitTime != 10*time.Millisecond {
		t.Errorf("fetch min %d, max wait %v; want 65536 and 10ms", c.Consumer.Fetch.Min, c.Consumer.MaxWaitTime)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}
