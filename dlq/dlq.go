// Package dlq is what operators and the firmware team use to work with the
// dead-letter topic: read it with filters, count it, and replay selected
// records to the topics they came from, once.
//
// A dead-letter record is a records.Envelope keyed by the original record's
// key. Its Value is the original input record's bytes: for the decode
// stage's message-level rejections that is the whole raw package (several
// envelopes may then share one original record), and for the ingest edge's
// rejections (Stage "edge", Partition and Offset -1) the package the edge
// refused to write to the raw topic.
//
// Reading is a plain scan of every partition from its oldest record to the
// high-water mark seen when the scan starts, in partition order and offset
// order within a partition; it joins no consumer group and commits nothing.
//
// Replay writes an envelope's Value back to its original Topic with its Key
// and Headers plus the replay headers (HeaderReplay, HeaderAttempts,
// HeaderFirstFailure and, for a processor group's failure,
// HeaderReplayGroup), and records the replay in the compacted topic
// ReplayedTopic(dlq), so that the same dead letter is never replayed twice.
// See docs/dead-letters.md.
package dlq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/IBM/sarama"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// TimeField names the envelope time a Filter's time range applies to.
type TimeField int

const (
	// ByLastFailure filters on Envelope.LastFailure (the default): when the
	// record was dead-lettered.
	ByLastFailure TimeField = iota
	// ByTimestamp filters on Envelope.Timestamp: the original record's time.
	ByTimestamp
)

// ParseTimeField parses "last-failure" or "timestamp".
func ParseTimeField(s string) (TimeField, error) {
	switch s {
	case "last-failure", "last_failure", "":
		return ByLastFailure, nil
	case "timestamp":
		return ByTimestamp, nil
	}
	return 0, fmt.Errorf("dlq: unknown time field %q (want last-failure or timestamp)", s)
}

// String returns the name ParseTimeField accepts.
func (f TimeField) String() string {
	if f == ByTimestamp {
		return "timestamp"
	}
	return "last-failure"
}

// Filter selects dead-letter envelopes. Every set field must match; the
// zero Filter selects everything.
type Filter struct {
	// Stages selects envelopes whose Stage is one of these (the processor
	// group's full name, prefix included, or "edge").
	Stages []string
	// Reason selects envelopes with this Reason.
	Reason string
	// Device selects envelopes whose Key is this device id (the record
	// key of every pipeline topic).
	Device string
	// Since and Until bound the time named by TimeField: Since <= t <
	// Until. A zero bound is open.
	Since, Until time.Time
	// TimeField is the envelope time the range applies to.
	TimeField TimeField
	// Topic, Partition and Offset select by the original record's place.
	// Partition and Offset apply when non-nil.
	Topic     string
	Partition *int32
	Offset    *int64
	// Limit stops a scan after this many matches; 0 means no limit.
	Limit int
}

// Match reports whether e passes every field of f but Limit.
func (f *Filter) Match(e *records.Envelope) bool {
	if len(f.Stages) > 0 {
		ok := false
		for _, s := range f.Stages {
			if e.Stage == s {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if f.Reason != "" && e.Reason != f.Reason {
		return false
	}
	if f.Device != "" && string(e.Key) != f.Device {
		return false
	}
	t := e.LastFailure
	if f.TimeField == ByTimestamp {
		t = e.Timestamp
	}
	if !f.Since.IsZero() && t.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !t.Before(f.Until) {
		return false
	}
	if f.Topic != "" && e.Topic != f.Topic {
		return false
	}
	if f.Partition != nil && e.Partition != *f.Partition {
		return false
	}
	if f.Offset != nil && e.Offset != *f.Offset {
		return false
	}
	return true
}

// ParseWhen parses an RFC 3339 time, or a duration meaning that long before
// now. The empty string is the zero time.
func ParseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("duration %q is negative; it means that long ago", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration such as 1h", s)
	}
	return t, nil
}

// Record is one dead-letter record: its place in the dead-letter topic and
// its decoded envelope.
type Record struct {
	// Partition and Offset locate the record in the dead-letter topic.
	Partition int32
	Offset    int64
	// Time is the dead-letter record's own timestamp.
	Time time.Time
	// Envelope is the decoded dead letter.
	Envelope records.Envelope
}

// Coordinates returns "partition/offset", the record's key in the replayed
// topic.
func (r *Record) Coordinates() string { return coordinates(r.Partition, r.Offset) }

// Origin returns "topic/partition/offset" of the original record, or ""
// when the envelope names no partition (an edge rejection was never
// written to its topic).
func (r *Record) Origin() string {
	e := &r.Envelope
	if e.Topic == "" || e.Partition < 0 {
		return ""
	}
	return e.Topic + "/" + coordinates(e.Partition, e.Offset)
}

func coordinates(p int32, o int64) string {
	return strconv.FormatInt(int64(p), 10) + "/" + strconv.FormatInt(o, 10)
}

// ScanStats says what a scan read.
type ScanStats struct {
	// Read counts the dead-letter records read.
	Read int
	// Matched counts the records handed to the callback.
	Matched int
	// Undecodable counts records that are not envelopes; they match no
	// filter and are logged.
	Undecodable int
}

// ErrNotFound is returned by Get when no record is at the coordinates.
var ErrNotFound = errors.New("dlq: no record at these coordinates")

// errStop ends a scan early without an error.
var errStop = errors.New("dlq: stop")

// Queue reads, counts and replays one dead-letter topic. It is safe for
// use by one goroutine at a time. Close it when done.
type Queue struct {
	k        topology.Kafka
	topic    string
	log      *slog.Logger
	client   sarama.Client
	consumer sarama.Consumer
}

// Open connects to the cluster of k for the dead-letter topic named topic.
// log receives warnings (nil means slog.Default()).
func Open(k topology.Kafka, topic string, log *slog.Logger) (*Queue, error) {
	if topic == "" {
		return nil, errors.New("dlq: no dead-letter topic named")
	}
	if log == nil {
		log = slog.Default()
	}
	client, err := sarama.NewClient(k.Brokers, readerConfig(k))
	if err != nil {
		return nil, fmt.Errorf("dlq: connect to %v: %w", k.Brokers, err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("dlq: consumer: %w", err)
	}
	return &Queue{k: k, topic: topic, log: log, client: client, consumer: consumer}, nil
}

// Topic returns the dead-letter topic's name.
func (q *Queue) Topic() string { return q.topic }

// Close releases the connections.
func (q *Queue) Close() error {
	err := q.consumer.Close()
	if cerr := q.client.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("dlq: close: %w", err)
	}
	return nil
}

// Scan reads the dead-letter topic up to the high-water marks at its start
// and calls fn with every envelope that f matches, in partition order and
// offset order within a partition, until f.Limit matches. An error from fn
// ends the scan and is returned.
func (q *Queue) Scan(ctx context.Context, f Filter, fn func(Record) error) (ScanStats, error) {
	var st ScanStats
	err := scanTopic(ctx, q.client, q.consumer, q.topic, func(m *sarama.ConsumerMessage) error {
		st.Read++
		e, err := records.EnvelopeCodec{}.Decode(m.Value)
		if err != nil {
			st.Undecodable++
			q.log.Warn("dead-letter record is not an envelope", "topic", q.topic, "partition", m.Partition, "offset", m.Offset, "err", err)
			return nil
		}
		if !f.Match(&e) {
			return nil
		}
		st.Matched++
		if err := fn(Record{Partition: m.Partition, Offset: m.Offset, Time: m.Timestamp, Envelope: e}); err != nil {
			return err
		}
		if f.Limit > 0 && st.Matched >= f.Limit {
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return st, err
}

// Get returns the dead-letter record at partition and offset, or an error
// wrapping ErrNotFound.
func (q *Queue) Get(ctx context.Context, partition int32, offset int64) (Record, error) {
	oldest, next, err := partitionBounds(q.client, q.topic, partition)
	if err != nil {
		return Record{}, err
	}
	if offset < oldest || offset >= next {
		return Record{}, fmt.Errorf("%w: %s %d/%d (partition holds offsets %d to %d)", ErrNotFound, q.topic, partition, offset, oldest, next-1)
	}
	var rec Record
	found := false
	err = readPartition(ctx, q.consumer, q.topic, partition, offset, next, func(m *sarama.ConsumerMessage) error {
		if m.Offset != offset {
			return errStop // compacted away or a control record
		}
		e, err := records.EnvelopeCodec{}.Decode(m.Value)
		if err != nil {
			return fmt.Errorf("dlq: %s %d/%d is not an envelope: %w", q.topic, partition, offset, err)
		}
		rec = Record{Partition: m.Partition, Offset: m.Offset, Time: m.Timestamp, Envelope: e}
		found = true
		return errStop
	})
	if err != nil && !errors.Is(err, errStop) {
		return Record{}, err
	}
	if !found {
		return Record{}, fmt.Errorf("%w: %s %d/%d", ErrNotFound, q.topic, partition, offset)
	}
	return rec, nil
}

// readerConfig is the configuration of the clients that read topics to
// their end: a fetch that finds no new record returns soon, since closing a
// partition's reader waits for the fetch in flight.
func readerConfig(k topology.Kafka) *sarama.Config {
	c := kafkaclient.Config(k)
	c.Consumer.MaxWaitTime = 20 * time.Millisecond
	return c
}

// scanTopic reads every partition of topic from its oldest record to the
// high-water mark at the call, in partition order.
func scanTopic(ctx context.Context, client sarama.Client, consumer sarama.Consumer, topic string, fn func(*sarama.ConsumerMessage) error) error {
	if err := client.RefreshMetadata(topic); err != nil {
		return fmt.Errorf("dlq: topic %q: %w", topic, err)
	}
	parts, err := client.Partitions(topic)
	if err != nil {
		return fmt.Errorf("dlq: partitions of %q: %w", topic, err)
	}
	for _, p := range parts {
		oldest, next, err := partitionBounds(client, topic, p)
		if err != nil {
			return err
		}
		if err := readPartition(ctx, consumer, topic, p, oldest, next, fn); err != nil {
			return err
		}
	}
	return nil
}

// partitionBounds returns the oldest offset and the high-water mark (the
// offset the next record will get) of a partition.
func partitionBounds(client sarama.Client, topic string, p int32) (oldest, next int64, err error) {
	oldest, err = client.GetOffset(topic, p, sarama.OffsetOldest)
	if err != nil {
		return 0, 0, fmt.Errorf("dlq: oldest offset of %s/%d: %w", topic, p, err)
	}
	next, err = client.GetOffset(topic, p, sarama.OffsetNewest)
	if err != nil {
		return 0, 0, fmt.Errorf("dlq: newest offset of %s/%d: %w", topic, p, err)
	}
	return oldest, next, nil
}

// readPartition calls fn with the records of partition p from offset from
// up to (not including) offset to. It returns fn's first error.
func readPartition(ctx context.Context, consumer sarama.Consumer, topic string, p int32, from, to int64, fn func(*sarama.ConsumerMessage) error) (err error) {
	if from >= to {
		return nil
	}
	pc, err := consumer.ConsumePartition(topic, p, from)
	if err != nil {
		return fmt.Errorf("dlq: read %s/%d from %d: %w", topic, p, from, err)
	}
	defer func() {
		if cerr := pc.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("dlq: read %s/%d: %w", topic, p, cerr)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("dlq: read %s/%d: %w", topic, p, ctx.Err())
		case cerr, ok := <-pc.Errors():
			if ok {
				return fmt.Errorf("dlq: read %s/%d: %w", topic, p, cerr)
			}
		case m, ok := <-pc.Messages():
			if !ok {
				return fmt.Errorf("dlq: read %s/%d: consumer closed", topic, p)
			}
			if m.Offset >= to {
				return nil
			}
			if err := fn(m); err != nil {
				return err
			}
			if m.Offset >= to-1 {
				return nil
			}
		}
	}
}
