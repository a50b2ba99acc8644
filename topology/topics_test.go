package topology_test

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
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
	admin, err := sarama.NewClusterAdmin(k.Brokers, kafkaclient.Config(k))
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
	// Compacted topics roll segments soon enough to be compacted.
	for _, name := range []string{"count-table"} {
		d := topics[name]
		for key, want := range map[string]int{"segment.bytes": topology.CompactedSegmentBytes, "segment.ms": topology.CompactedSegmentMs} {
			if v := d.ConfigEntries[key]; v == nil || *v != strconv.Itoa(want) {
				t.Errorf("%s: %s = %v, want %d", name, key, v, want)
			}
		}
	}
	if v := topics["numbers"].ConfigEntries["segment.bytes"]; v != nil && *v == strconv.Itoa(topology.CompactedSegmentBytes) {
		t.Errorf("numbers, a stream: segment.bytes = %s", *v)
	}
	if d := topics["numbers"]; d.NumPartitions != 4 {
		t.Errorf("numbers = %+v", d)
	}
	// Every topic holds the largest record; the dead-letter topic's size
	// is capped.
	for name, d := range topics {
		if v := d.ConfigEntries["max.message.bytes"]; v == nil || *v != strconv.Itoa(topology.TopicMaxMessageBytes) {
			t.Errorf("%s: max.message.bytes = %v, want %d", name, v, topology.TopicMaxMessageBytes)
		}
	}
	dlq := topics[c.t.DeadLetterTopic()]
	if v := dlq.ConfigEntries["retention.bytes"]; v == nil || *v != strconv.Itoa(topology.DefaultDeadLetterRetentionBytes) {
		t.Errorf("%s: retention.bytes = %v", c.t.DeadLetterTopic(), v)
	}
	if v := topics["numbers"].ConfigEntries["retention.bytes"]; v != nil && *v != "-1" {
		t.Errorf("numbers: retention.bytes = %s, want none", *v)
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

// The dead-letter topic's byte retention is configurable, -1 for no cap.
func TestDeadLetterRetentionBytes(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	c := newCounter(2)
	for _, n := range []int64{5 << 20, -1} {
		plan, err := c.t.EnsureTopics(k, topology.TopicOptions{DryRun: true, DeadLetterRetentionBytes: n})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, p := range plan {
			if p.Name == c.t.DeadLetterTopic() {
				found = true
				if got := p.Config["retention.bytes"]; got != strconv.FormatInt(n, 10) {
					t.Errorf("retention.bytes = %q, want %d", got, n)
				}
			}
		}
		if !found {
			t.Fatalf("no dead-letter topic in the plan %+v", plan)
		}
	}
}

// A topic created before the record limit was raised (Kafka's default
// max.message.bytes) has its limit raised; the plan says so once.
func TestEnsureTopicsRaisesMaxMessageBytes(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	c := newCounter(4)
	admin, err := sarama.NewClusterAdmin(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.CreateTopic("numbers", &sarama.TopicDetail{NumPartitions: 4, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	action := func(plan []topology.TopicPlan) string {
		for _, p := range plan {
			if p.Name == "numbers" {
				return p.Action
			}
		}
		return ""
	}
	plan, err := c.t.EnsureTopics(k, topology.TopicOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a := action(plan); a != "update" {
		t.Errorf("numbers: action %q, want update", a)
	}
	topics, err := admin.ListTopics()
	if err != nil {
		t.Fatal(err)
	}
	if v := topics["numbers"].ConfigEntries["max.message.bytes"]; v == nil || *v != strconv.Itoa(topology.TopicMaxMessageBytes) {
		t.Errorf("numbers: max.message.bytes = %v after the update", v)
	}
	if plan, err = c.t.EnsureTopics(k, topology.TopicOptions{}); err != nil || action(plan) != "exists" {
		t.Errorf("second run: %q, %v; want exists", action(plan), err)
	}
}
