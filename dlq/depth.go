package dlq

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/topology"
)

// DefaultScrapeTimeout bounds the reading a DepthCollector does in one
// scrape; what is not read by then is read at the next scrape.
const DefaultScrapeTimeout = 5 * time.Second

// UndecodableReason is the reason label of dead-letter records that are
// not envelopes (their stage label is "unknown").
const UndecodableReason = "undecodable"

var (
	depthDesc = prometheus.NewDesc("watershed_dlq_records",
		"Records in the dead-letter topic, by envelope reason and stage (replayed ones included, until retention removes them).",
		[]string{"reason", "stage"}, nil)
	oldestDesc = prometheus.NewDesc("watershed_dlq_oldest_age_seconds",
		"Age of the oldest record still in the dead-letter topic, by its envelope's last failure; 0 when the topic is empty.",
		nil, nil)
)

// DepthCollector is a prometheus.Collector of the dead-letter topic's
// depth: watershed_dlq_records{reason,stage} and
// watershed_dlq_oldest_age_seconds. It reads the topic incrementally: it
// keeps, per partition, the next offset to read and one small entry per
// record still in the topic, reads the records added since the last scrape
// (for at most DefaultScrapeTimeout) and drops those that retention
// removed. The first scrape reads the whole topic. Close it when done.
//
// Its memory is about 24 bytes per dead-letter record. When Kafka cannot be
// reached it logs a warning and reports what it counted so far.
type DepthCollector struct {
	k       topology.Kafka
	topic   string
	timeout time.Duration
	log     *slog.Logger

	mu       sync.Mutex
	client   sarama.Client
	consumer sarama.Consumer
	parts    map[int32]*partitionDepth
	labels   []depthLabel
	labelIdx map[depthLabel]int32
	counts   []int
}

type depthLabel struct{ reason, stage string }

// depthEntry is what the collector keeps of one dead-letter record.
type depthEntry struct {
	offset   int64
	failedAt int64 // Unix nanoseconds of LastFailure
	label    int32
}

type partitionDepth struct {
	next    int64 // the next offset to read
	entries []depthEntry
}

// NewDepthCollector returns a collector of the dead-letter topic named
// topic on the cluster of k. It connects at its first scrape.
func NewDepthCollector(k topology.Kafka, topic string) *DepthCollector {
	return &DepthCollector{
		k:        k,
		topic:    topic,
		timeout:  DefaultScrapeTimeout,
		log:      slog.Default(),
		parts:    map[int32]*partitionDepth{},
		labelIdx: map[depthLabel]int32{},
	}
}

// Describe implements prometheus.Collector.
func (c *DepthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- depthDesc
	ch <- oldestDesc
}

// Collect implements prometheus.Collector: it reads the records added since
// the last scrape and reports the counts.
func (c *DepthCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	if err := c.update(ctx); err != nil {
		c.log.Warn("dead-letter depth not up to date", "topic", c.topic, "err", err)
	}
	for i, l := range c.labels {
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(c.counts[i]), l.reason, l.stage)
	}
	var oldest int64
	found := false
	for _, p := range c.parts {
		if len(p.entries) == 0 {
			continue
		}
		if t := p.entries[0].failedAt; !found || t < oldest {
			oldest, found = t, true
		}
	}
	age := 0.0
	if found {
		age = max(0, time.Since(time.Unix(0, oldest)).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, age)
}

// Close releases the collector's connections.
func (c *DepthCollector) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.disconnect()
}

func (c *DepthCollector) disconnect() error {
	var err error
	if c.consumer != nil {
		err = c.consumer.Close()
	}
	if c.client != nil {
		if cerr := c.client.Close(); err == nil {
			err = cerr
		}
	}
	c.consumer, c.client = nil, nil
	if err != nil {
		return fmt.Errorf("dlq: close depth collector: %w", err)
	}
	return nil
}

// update brings the entries up to date with the topic.
func (c *DepthCollector) update(ctx context.Context) error {
	if c.client == nil {
		client, err := sarama.NewClient(c.k.Brokers, readerConfig(c.k))
		if err != nil {
			return fmt.Errorf("connect to %v: %w", c.k.Brokers, err)
		}
		consumer, err := sarama.NewConsumerFromClient(client)
		if err != nil {
			client.Close()
			return fmt.Errorf("consumer: %w", err)
		}
		c.client, c.consumer = client, consumer
	}
	if err := c.client.RefreshMetadata(c.topic); err != nil {
		return fmt.Errorf("topic %q: %w", c.topic, err)
	}
	ids, err := c.client.Partitions(c.topic)
	if err != nil {
		return fmt.Errorf("partitions of %q: %w", c.topic, err)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		if err := c.updatePartition(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

func (c *DepthCollector) updatePartition(ctx context.Context, id int32) error {
	p := c.parts[id]
	if p == nil {
		p = &partitionDepth{}
		c.parts[id] = p
	}
	oldest, next, err := partitionBounds(c.client, c.topic, id)
	if err != nil {
		return err
	}
	if next < p.next {
		// The topic was deleted and created again: start over.
		c.trim(p, math.MaxInt64)
		p.next = 0
	}
	c.trim(p, oldest)
	if p.next < oldest {
		p.next = oldest
	}
	return readPartition(ctx, c.consumer, c.topic, id, p.next, next, func(m *sarama.ConsumerMessage) error {
		l := depthLabel{reason: UndecodableReason, stage: "unknown"}
		failedAt := m.Timestamp
		if e, err := (records.EnvelopeCodec{}).Decode(m.Value); err == nil {
			l = depthLabel{reason: e.Reason, stage: e.Stage}
			if !e.LastFailure.IsZero() {
				failedAt = e.LastFailure
			}
		}
		i, ok := c.labelIdx[l]
		if !ok {
			i = int32(len(c.labels))
			c.labels = append(c.labels, l)
			c.counts = append(c.counts, 0)
			c.labelIdx[l] = i
		}
		c.counts[i]++
		p.entries = append(p.entries, depthEntry{offset: m.Offset, failedAt: failedAt.UnixNano(), label: i})
		p.next = m.Offset + 1
		return nil
	})
}

// trim forgets the entries of p before offset oldest.
func (c *DepthCollector) trim(p *partitionDepth, oldest int64) {
	n := 0
	for n < len(p.entries) && p.entries[n].offset < oldest {
		c.counts[p.entries[n].label]--
		n++
	}
	if n == 0 {
		return
	}
	p.entries = p.entries[n:]
	if cap(p.entries) > 2*len(p.entries)+64 {
		p.entries = append([]depthEntry(nil), p.entries...)
	}
}
