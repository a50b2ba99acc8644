package topology

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
)

// TopicPlan is what EnsureTopics does, or would do, for one topic.
type TopicPlan struct {
	Name        string
	Partitions  int32
	Replication int16
	Config      map[string]string
	// Action is "create", "exists", "update" (an existing topic takes
	// smaller records than MaxRecordBytes: its max.message.bytes is raised),
	// or "mismatch".
	Action string
	// Detail explains an update or a mismatch.
	Detail string
}

// TopicOptions configure EnsureTopics.
type TopicOptions struct {
	// DryRun only plans: nothing is created.
	DryRun bool
	// StreamRetention is the retention of stream topics (default 7 days).
	StreamRetention time.Duration
	// DeadLetterRetention is the retention of the dead-letter topic
	// (default 30 days: long enough for an operator to look).
	DeadLetterRetention time.Duration
	// DeadLetterRetentionBytes caps the dead-letter topic's size per
	// partition (Kafka's retention.bytes; default
	// DefaultDeadLetterRetentionBytes; -1: no cap), so that a flood of bad
	// packages deletes the oldest dead letters instead of filling the
	// brokers' disks.
	DeadLetterRetentionBytes int64
}

// DefaultDeadLetterRetentionBytes is the dead-letter topic's default
// retention.bytes: 1 GiB per partition.
const DefaultDeadLetterRetentionBytes = 1 << 30

// ErrTopicMismatch is returned when an existing topic's partition count
// differs from the declaration: running on it would break co-partitioning.
var ErrTopicMismatch = errors.New("topology: topic differs from its declaration")

// EnsureTopics creates every topic of the topology that does not exist yet
// (tables compacted, streams with time retention, the dead-letter topic
// with time and byte retention, every one accepting records of
// MaxRecordBytes) and checks the partition count of those that exist,
// raising their max.message.bytes when it is below TopicMaxMessageBytes.
// It returns the plan; with a mismatch it returns ErrTopicMismatch and
// creates or changes nothing.
func (t *Topology) EnsureTopics(k Kafka, opts TopicOptions) ([]TopicPlan, error) {
	if err := k.validate(); err != nil {
		return nil, err
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return t.ensureTopics(k, opts)
}

// ensureTopics is EnsureTopics of a built topology (a Runner's plan, which
// late declarations do not change).
func (t *Topology) ensureTopics(k Kafka, opts TopicOptions) ([]TopicPlan, error) {
	admin, err := sarama.NewClusterAdmin(k.Brokers, k.config())
	if err != nil {
		return nil, fmt.Errorf("topology: connect to %v: %w", k.Brokers, err)
	}
	defer admin.Close()
	existing, err := admin.ListTopics()
	if err != nil {
		return nil, fmt.Errorf("topology: list topics: %w", err)
	}
	plan := t.topicPlan(k, opts, existing)
	var mismatches []string
	for _, p := range plan {
		if p.Action == "mismatch" {
			mismatches = append(mismatches, p.Name+": "+p.Detail)
		}
	}
	if len(mismatches) > 0 {
		return plan, fmt.Errorf("%w: %s", ErrTopicMismatch, strings.Join(mismatches, "; "))
	}
	if opts.DryRun {
		return plan, nil
	}
	for _, p := range plan {
		if p.Action == "update" {
			v := p.Config["max.message.bytes"]
			err := admin.IncrementalAlterConfig(sarama.TopicResource, p.Name, map[string]sarama.IncrementalAlterConfigsEntry{
				"max.message.bytes": {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &v},
			}, false)
			if err != nil {
				return plan, fmt.Errorf("topology: raise max.message.bytes of topic %q: %w", p.Name, err)
			}
			continue
		}
		if p.Action != "create" {
			continue
		}
		cfg := map[string]*string{}
		for key, v := range p.Config {
			cfg[key] = &v
		}
		err := admin.CreateTopic(p.Name, &sarama.TopicDetail{
			NumPartitions: p.Partitions, ReplicationFactor: p.Replication, ConfigEntries: cfg,
		}, false)
		if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
			return plan, fmt.Errorf("topology: create topic %q: %w", p.Name, err)
		}
	}
	return plan, t.waitTopics(k, plan)
}

// waitTopics waits until the brokers report the created topics with their
// partitions, since processors fail when an input is not there yet.
func (t *Topology) waitTopics(k Kafka, plan []TopicPlan) error {
	client, err := sarama.NewClient(k.Brokers, k.config())
	if err != nil {
		return fmt.Errorf("topology: connect to %v: %w", k.Brokers, err)
	}
	defer client.Close()
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range plan {
		for {
			_ = client.RefreshMetadata(p.Name)
			parts, err := client.Partitions(p.Name)
			if err == nil && int32(len(parts)) == p.Partitions {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("topology: topic %q not ready: %v", p.Name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

func (t *Topology) topicPlan(k Kafka, opts TopicOptions, existing map[string]sarama.TopicDetail) []TopicPlan {
	if opts.StreamRetention == 0 {
		opts.StreamRetention = 7 * 24 * time.Hour
	}
	if opts.DeadLetterRetention == 0 {
		opts.DeadLetterRetention = 30 * 24 * time.Hour
	}
	if opts.DeadLetterRetentionBytes == 0 {
		opts.DeadLetterRetentionBytes = DefaultDeadLetterRetentionBytes
	}
	var plan []TopicPlan
	for _, name := range t.Topics() {
		d := t.topics[name]
		p := TopicPlan{Name: name, Partitions: d.partitions, Replication: k.replication(), Config: map[string]string{
			"max.message.bytes": strconv.Itoa(TopicMaxMessageBytes),
		}}
		switch {
		case d.kind == kindTable || d.kind == kindState:
			p.Config["cleanup.policy"] = "compact"
			p.Config["segment.bytes"] = strconv.Itoa(CompactedSegmentBytes)
			p.Config["segment.ms"] = strconv.Itoa(CompactedSegmentMs)
			if d.kind == kindState {
				// Said, not left to the broker's default: a state
				// checkpoint is used only while the changelog keeps the
				// tombstones of its tail (see checkpointUsable).
				p.Config["delete.retention.ms"] = strconv.FormatInt(StateTombstoneRetention.Milliseconds(), 10)
			}
			if d.retentionMs > 0 {
				p.Config["cleanup.policy"] = "compact,delete"
				p.Config["retention.ms"] = strconv.FormatInt(d.retentionMs, 10)
			}
		case d.retentionMs > 0:
			p.Config["cleanup.policy"] = "delete"
			p.Config["retention.ms"] = strconv.FormatInt(d.retentionMs, 10)
		case d.deadLetter:
			p.Config["cleanup.policy"] = "delete"
			p.Config["retention.ms"] = strconv.FormatInt(opts.DeadLetterRetention.Milliseconds(), 10)
			p.Config["retention.bytes"] = strconv.FormatInt(opts.DeadLetterRetentionBytes, 10)
		default:
			p.Config["cleanup.policy"] = "delete"
			p.Config["retention.ms"] = strconv.FormatInt(opts.StreamRetention.Milliseconds(), 10)
		}
		if ex, ok := existing[name]; ok {
			p.Action = "exists"
			if ex.NumPartitions != d.partitions {
				p.Action = "mismatch"
				p.Detail = fmt.Sprintf("has %d partitions, declared %d", ex.NumPartitions, d.partitions)
			} else if cur := ex.ConfigEntries["max.message.bytes"]; cur == nil || atoi(*cur) < TopicMaxMessageBytes {
				// A topic created before the limit was raised would
				// refuse the largest package for ever.
				p.Action = "update"
				from := "the broker's default"
				if cur != nil {
					from = *cur
				}
				p.Detail = fmt.Sprintf("max.message.bytes from %s to %d", from, TopicMaxMessageBytes)
			}
		} else {
			p.Action = "create"
		}
		plan = append(plan, p)
	}
	return plan
}

// atoi reads a topic setting, 0 when it is not a number.
func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// WritePlan prints a topic plan, one line per topic.
func WritePlan(w io.Writer, plan []TopicPlan) error {
	for _, p := range plan {
		keys := make([]string, 0, len(p.Config))
		for key := range p.Config {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		var cfg []string
		for _, key := range keys {
			cfg = append(cfg, key+"="+p.Config[key])
		}
		line := fmt.Sprintf("%-8s %-36s partitions=%d replication=%d %s", p.Action, p.Name, p.Partitions, p.Replication, strings.Join(cfg, " "))
		if p.Detail != "" {
			line += " (" + p.Detail + ")"
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return fmt.Errorf("topology: write plan: %w", err)
		}
	}
	return nil
}
