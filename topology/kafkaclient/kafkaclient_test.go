package kafkaclient_test

import (
	"fmt"
	"testing"

	"github.com/IBM/sarama"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// A producer configured for a partitioner places keys as it does; the
// default configuration places them by goka's hash.
func TestProducerConfigFor(t *testing.T) {
	k := topology.Kafka{Brokers: []string{"127.0.0.1:9"}}
	for _, c := range []struct {
		cfg *sarama.Config
		p   topology.Partitioner
	}{
		{kafkaclient.ProducerConfigFor(k, topology.Murmur2), topology.Murmur2},
		{kafkaclient.ProducerConfigFor(k, topology.GokaHash), topology.GokaHash},
		{kafkaclient.ProducerConfig(k), topology.GokaHash},
	} {
		part := c.cfg.Producer.Partitioner("t")
		differ := 0
		for i := range 100 {
			key := fmt.Sprint(1000 + i)
			got, err := part.Partition(&sarama.ProducerMessage{Topic: "t", Key: sarama.StringEncoder(key)}, 8)
			if want := c.p.Partition([]byte(key), 8); err != nil || got != want {
				t.Fatalf("%s: key %s to %d (%v), want %d", c.p, key, got, err, want)
			}
			if topology.Murmur2.Partition([]byte(key), 8) != topology.GokaHash.Partition([]byte(key), 8) {
				differ++
			}
		}
		if differ == 0 {
			t.Fatal("bad test: the partitioners agree on every key")
		}
	}
}
