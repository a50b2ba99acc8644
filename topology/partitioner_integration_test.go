//go:build integration

package topology_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/testinfra"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// TestIntegrationMurmur2MatchesKafkaProducers: records that kcat writes
// with Kafka's default partitioner (librdkafka's murmur2, which shares no
// code with watershed) land on a real broker exactly where Murmur2 says,
// and a producer of kafkaclient.ProducerConfigFor(Murmur2) puts the same
// keys in the same partitions.
func TestIntegrationMurmur2MatchesKafkaProducers(t *testing.T) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatalf("kcat is needed (`make tools` installs it): %v", err)
	}
	brokers := testinfra.Kafka(t)
	k := topology.Kafka{Brokers: brokers, ClientID: "murmur2-test"}
	const n = 12
	var keys []string
	var input strings.Builder
	for i := range 300 {
		key := fmt.Sprint(1_000_000 + i*7919)
		keys = append(keys, key)
		fmt.Fprintf(&input, "%s:kcat\n", key)
	}
	byKcat := testinfra.CreateTopic(t, brokers, n)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kcat", "-P", "-b", strings.Join(brokers, ","), "-t", byKcat, "-K:", "-X", "partitioner=murmur2")
	cmd.Stdin = strings.NewReader(input.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat: %v\n%s", err, out)
	}
	byUs := testinfra.CreateTopic(t, brokers, n)
	produceWith(t, kafkaclient.ProducerConfigFor(k, topology.Murmur2), brokers, byUs, keys, func(string) string { return "go" })

	moved := 0
	for _, topic := range []string{byKcat, byUs} {
		msgs := readAll(t, k, topic, len(keys), 30*time.Second)
		for _, m := range msgs {
			if want := topology.Murmur2.Partition(m.Key, n); m.Partition != want {
				t.Errorf("%s: key %s in partition %d, Murmur2 says %d", topic, m.Key, m.Partition, want)
			}
			if topic == byKcat && topology.GokaHash.Partition(m.Key, n) != m.Partition {
				moved++
			}
		}
	}
	if moved < len(keys)/2 {
		t.Fatalf("bad test: goka's hash agrees with murmur2 on %d of %d keys", len(keys)-moved, len(keys))
	}
}
