package topology_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/watershed-io/watershed/topology"
)

func TestEnsureTopics(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	c := newCounter(4)

	plan, err := c.t.EnsureTopics(k, topology.TopicOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plan {
		if p.Action != "create" {
			t.Errorf("dry run on an empty cluster: %+v", p)
		}
	}
	admin, err := sarama.NewClusterAdmin(k.Brokers, k.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if topics, _ := admin.ListTopics(); len(topics) != 0 {
		t.Fatalf("dry run created %v", topics)
	}

	if _, err := c.t.EnsureTopics(k, topology.TopicOptions{}); err != nil {
		t.Fatal(err)
	}
	topics, err := admin.ListTopics()
	if err != nil {
		t.Fatal(err)
	}
	if d := topics["count-table"]; d.NumPartitions != 4 || d.ConfigEntries["cleanup.policy"] == nil || *d.ConfigEntries["cleanup.policy"] != "compact" {
		t.Errorf("count-table = %+v", d)
	}
	if d := topics["numbers"]; d.NumPartitions != 4 {
		t.Errorf("numbers = %+v", d)
	}
	// Idempotent.
	plan, err = c.t.EnsureTopics(k, topology.TopicOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := topology.WritePlan(&b, plan); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "create") || !strings.Contains(b.String(), "exists   count-table") {
		t.Errorf("second plan:\n%s", b.String())
	}

	// A topic whose partition count differs is refused.
	other := newCounter(6)
	if _, err := other.t.EnsureTopics(k, topology.TopicOptions{}); !errors.Is(err, topology.ErrTopicMismatch) {
		t.Fatalf("mismatch: %v", err)
	} else if !strings.Contains(err.Error(), "numbers: has 4 partitions, declared 6") {
		t.Errorf("mismatch error does not name the topic: %v", err)
	}
}
