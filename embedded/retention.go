package embedded

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Retention configures the embedded broker's consumed retention, which keeps
// its memory flat under a steady load.
//
// kfake keeps every record in memory (in a data folder, every record on disk
// and an index entry per batch in memory) until a topic's retention.ms or
// retention.bytes removes it, and the topology gives streams seven days. A
// pass of consumed retention does what Kafka Streams does to its repartition
// topics: on every topic with cleanup.policy=delete it deletes the records
// below the lowest offset that the consumer groups reading the topic have
// committed (a DeleteRecords, as kafka-delete-records.sh would send). The
// groups that read a partition are those that committed an offset on it and
// those with a member subscribed to its topic; while any of them has not
// committed on the partition, the partition is kept whole, and so is a topic
// no group reads (up to UnreadMaxBytes). Records at or above every reader's
// committed offset are never deleted, so a group that restarts, or
// rebalances, resumes where it stood. Readers outside consumer groups (a
// plain consumer scanning from the oldest offset, say) are invisible to it:
// name their topics in Keep.
//
// Readers are known only by their members and commits when a pass runs. A
// consumer group that joins late (no member and no commit yet, such as
// `watershed run --groups sink` started later against a long-running
// broker) is not yet a reader: it may start after records it would have
// read were trimmed (resetting to the oldest offset, as the topology's
// groups do, it starts at the oldest record left). Start every group before producing, or name
// the topic in Keep. The other way round, a group removed from the
// deployment keeps its old commits, so it stays a reader and pins its
// topics from its last commit on: memory (or disk) grows, no data is lost.
// Deleting the group (a DeleteGroups request) releases them.
//
// Compacted topics (cleanup.policy=compact) are never trimmed; a pass of the
// log cleaner compacts them every CompactInterval, keeping the latest record
// of every key, and enforces every topic's own retention.ms and
// retention.bytes, as Kafka's log cleaner does.
type Retention struct {
	// Interval is the time between trimming passes (default 5s).
	Interval time.Duration
	// CompactInterval is the time between passes of the log cleaner
	// (default 30s). A pass reads and rewrites each compacted partition
	// whole while the broker waits, so it runs less often than trimming.
	CompactInterval time.Duration
	// Keep names topics that consumed retention never trims, such as a
	// dead-letter topic kept for operators or a topic read later from
	// its start. Their own retention.ms and retention.bytes still apply.
	Keep []string
	// UnreadMaxBytes, when positive, caps each partition of a
	// delete-policy topic that no consumer group reads at about this
	// many bytes, dropping its oldest records first (retention.bytes for
	// topics nobody consumes); zero keeps such topics whole.
	UnreadMaxBytes int64
	// SegmentBytes is the broker's log.segment.bytes (default 256 KiB).
	// Trimmed records free their memory only when their whole segment
	// goes, and kfake's default segment is 100 MiB per partition. Every
	// partition keeps its newest segment, whose in-memory file may hold
	// up to twice this size, so the floor of the broker's memory is about
	// partitions x 2 x SegmentBytes (88 partitions in the pipeline).
	SegmentBytes int64
}

// DefaultRetention is the consumed retention the demo and the benchmark run
// with: trimming every 5 s, compaction every 30 s, 256 KiB segments and 16 MiB
// per partition of a topic nobody reads. keep names the topics kept whole.
func DefaultRetention(keep ...string) *Retention {
	return &Retention{Keep: keep, UnreadMaxBytes: 16 << 20}
}

func (r Retention) withDefaults() Retention {
	if r.Interval <= 0 {
		r.Interval = 5 * time.Second
	}
	if r.CompactInterval <= 0 {
		r.CompactInterval = 30 * time.Second
	}
	if r.SegmentBytes <= 0 {
		r.SegmentBytes = 256 << 10
	}
	return r
}

// RetentionPass says what one pass of retention did.
type RetentionPass struct {
	// Trimmed counts the records deleted below committed offsets, and
	// Capped those deleted by UnreadMaxBytes.
	Trimmed, Capped int64
	// Compacted says whether the log cleaner ran.
	Compacted bool
	// Held is the size of every topic's record batches after the pass.
	// A trimmed segment's memory goes only once the whole segment went.
	Held map[string]int64
}

// PartitionLog is the state of one partition's log.
type PartitionLog struct {
	Partition int32
	// Start is the log start offset, End the high watermark.
	Start, End int64
	// Bytes is the size of the record batches held.
	Bytes int64
}

// Log returns the state of every partition of a topic, in partition order,
// or nil when the topic does not exist.
func (b *Broker) Log(topic string) []PartitionLog {
	infos := b.cluster.PartitionInfos(topic)
	if infos == nil {
		return nil
	}
	out := make([]PartitionLog, 0, len(infos))
	for _, pi := range infos {
		out = append(out, PartitionLog{Partition: pi.Partition, Start: pi.LogStartOffset, End: pi.HighWatermark, Bytes: pi.NumBytes})
	}
	return out
}

// Retain runs one pass of retention now: it trims delete-policy topics to
// their readers' committed offsets and runs the log cleaner. It works whether
// or not Options.Retention was set; without it, it uses the defaults of
// Retention with nothing kept and no cap.
func (b *Broker) Retain(ctx context.Context) (RetentionPass, error) {
	r := b.retention
	if r == nil {
		r = &Retention{}
	}
	rt := r.withDefaults()
	admin, err := b.newAdmin()
	if err != nil {
		return RetentionPass{}, err
	}
	defer admin.Close()
	return b.retain(ctx, admin, rt, true)
}

// runRetention trims every Interval and cleans every CompactInterval until
// ctx is cancelled.
func (b *Broker) runRetention(ctx context.Context, r Retention) {
	defer close(b.retentionDone)
	trim := time.NewTicker(r.Interval)
	defer trim.Stop()
	lastCompact := time.Now()
	var admin sarama.ClusterAdmin
	defer func() {
		if admin != nil {
			_ = admin.Close()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-trim.C:
		}
		if admin == nil {
			var err error
			if admin, err = b.newAdmin(); err != nil {
				b.log.Warn("embedded broker retention: connect", "err", err)
				continue
			}
		}
		compact := time.Since(lastCompact) >= r.CompactInterval
		started := time.Now()
		pass, err := b.retain(ctx, admin, r, compact)
		if compact {
			lastCompact = time.Now()
		}
		if err != nil {
			if ctx.Err() == nil {
				b.log.Warn("embedded broker retention pass failed", "err", err)
			}
			// A broken connection is replaced on the next pass.
			_ = admin.Close()
			admin = nil
			continue
		}
		b.log.Debug("embedded broker retention pass", "trimmed", pass.Trimmed, "capped", pass.Capped,
			"compacted", pass.Compacted, "took", time.Since(started), "held_bytes", pass.Held)
	}
}

func (b *Broker) newAdmin() (sarama.ClusterAdmin, error) {
	cfg := sarama.NewConfig()
	cfg.ClientID = "embedded-broker-retention"
	cfg.Version = sarama.V3_6_0_0
	admin, err := sarama.NewClusterAdmin(b.addrs, cfg)
	if err != nil {
		return nil, fmt.Errorf("embedded: retention admin: %w", err)
	}
	return admin, nil
}

// retain is one pass. Group commits are read before the log is, and a
// commit only moves forward, so the offsets trimmed to were committed.
func (b *Broker) retain(ctx context.Context, admin sarama.ClusterAdmin, r Retention, compact bool) (RetentionPass, error) {
	var pass RetentionPass
	groups, err := admin.ListConsumerGroups()
	if err != nil {
		return pass, fmt.Errorf("embedded: list groups: %w", err)
	}
	readers := map[string][]*kfake.GroupInfo{} // topic => groups reading it
	for name := range groups {
		gi := b.cluster.GroupInfo(name)
		if gi == nil {
			continue
		}
		topics := map[string]bool{}
		for t := range gi.Commits {
			topics[t] = true
		}
		for _, m := range gi.Members {
			for _, t := range m.SubscribedTopics {
				topics[t] = true
			}
			for t := range m.Assignment {
				topics[t] = true
			}
		}
		for t := range topics {
			readers[t] = append(readers[t], gi)
		}
	}
	topics, err := admin.ListTopics()
	if err != nil {
		return pass, fmt.Errorf("embedded: list topics: %w", err)
	}
	for topic := range topics {
		if err := ctx.Err(); err != nil {
			return pass, fmt.Errorf("embedded: retention: %w", err)
		}
		if slices.Contains(r.Keep, topic) || !deletePolicy(b.cluster.TopicInfo(topic)) {
			continue
		}
		for _, pl := range b.Log(topic) {
			to, capped := trimPoint(pl, readers[topic], topic, r.UnreadMaxBytes)
			if to <= pl.Start {
				continue
			}
			if err := b.cluster.DeleteRecords(topic, pl.Partition, to); err != nil {
				return pass, fmt.Errorf("embedded: delete records of %s/%d below %d: %w", topic, pl.Partition, to, err)
			}
			if capped {
				pass.Capped += to - pl.Start
			} else {
				pass.Trimmed += to - pl.Start
			}
		}
	}
	if compact {
		b.cluster.Compact()
		pass.Compacted = true
	}
	pass.Held = make(map[string]int64, len(topics))
	for topic := range topics {
		for _, pl := range b.Log(topic) {
			pass.Held[topic] += pl.Bytes
		}
	}
	return pass, nil
}

// trimPoint returns the offset a partition can be trimmed to: the lowest
// offset its readers committed, or with no reader the offset that keeps about
// unreadMax bytes. capped says which applied.
func trimPoint(pl PartitionLog, readers []*kfake.GroupInfo, topic string, unreadMax int64) (to int64, capped bool) {
	if len(readers) == 0 {
		if unreadMax <= 0 || pl.Bytes <= unreadMax || pl.End <= pl.Start {
			return pl.Start, false
		}
		// Batches are not visible from here, so the cap is met by the
		// partition's mean record size; a batch's bytes go only with its
		// last record, so the partition may keep one batch over the cap.
		perRecord := float64(pl.Bytes) / float64(pl.End-pl.Start)
		return pl.End - int64(float64(unreadMax)/perRecord), true
	}
	to = pl.End
	for _, g := range readers {
		c, ok := g.Commits[topic][pl.Partition]
		if !ok || c.Offset < 0 {
			// This group reads the topic and has not committed on
			// the partition: it may still need all of it.
			return pl.Start, false
		}
		to = min(to, c.Offset)
	}
	return to, false
}

// deletePolicy says whether a topic's cleanup.policy is delete only (Kafka's
// default when unset).
func deletePolicy(ti *kfake.TopicInfo) bool {
	if ti == nil {
		return false
	}
	v, ok := ti.Configs["cleanup.policy"]
	if !ok || v == nil {
		return true
	}
	return !strings.Contains(*v, "compact")
}

// segmentConfig is the broker configuration consumed retention needs.
func segmentConfig(r Retention) map[string]string {
	return map[string]string{"log.segment.bytes": strconv.FormatInt(r.SegmentBytes, 10)}
}
