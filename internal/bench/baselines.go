package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"golang.org/x/sync/errgroup"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// Baselines bound what the pipeline can do, measured on the raw topic the
// run filled and on the same packages, after the pipeline stopped.
type Baselines struct {
	// SaramaConsumer is a plain sarama consumer group reading the raw
	// topic, consuming only.
	SaramaConsumer Baseline `json:"sarama_consumer"`
	// GokaNoop is a goka processor (through the topology runner) whose
	// handler does nothing, on the raw topic.
	GokaNoop Baseline `json:"goka_noop"`
	// DecodeFloor decodes every accepted package once on one goroutine:
	// snappy, CRCs and frames, the decoder's floor.
	DecodeFloor Baseline `json:"decode_floor"`
	// GokaPeer is a plain goka pipeline written the way goka's examples
	// are (one JSON record per message; decode and a device-state table
	// only), draining the raw topic: see gokaPeer.
	GokaPeer Baseline `json:"goka_peer"`
}

// Baseline is one baseline's rate; messages are the records' package
// messages.
type Baseline struct {
	Records                  uint64  `json:"records"`
	Seconds                  float64 `json:"seconds"`
	RecordsPerSecond         float64 `json:"records_per_second"`
	MessagesPerSecond        float64 `json:"messages_per_second"`
	CPUSecondsPer10kMessages float64 `json:"cpu_seconds_per_10k_messages"`
}

func (b *Baseline) set(records uint64, wall, cpu time.Duration, msgsPerRecord float64) {
	b.Records = records
	b.Seconds = wall.Seconds()
	secs := max(wall.Seconds(), 1e-9)
	b.RecordsPerSecond = float64(records) / secs
	b.MessagesPerSecond = b.RecordsPerSecond * msgsPerRecord
	if msgs := float64(records) * msgsPerRecord; msgs > 0 {
		b.CPUSecondsPer10kMessages = cpu.Seconds() / msgs * 10_000
	}
}

func runBaselines(ctx context.Context, k topology.Kafka, prefix string, parts int32, dataDir string, w *workload, log *slog.Logger) (*Baselines, error) {
	raw := prefix + processors.TopicRaw
	total, err := endOffsets(k, raw, parts)
	if err != nil {
		return nil, err
	}
	perRecord := 0.0
	if w.accepted > 0 {
		perRecord = float64(w.rawMessages) / float64(w.accepted)
	}
	b := &Baselines{}
	if err := saramaBaseline(ctx, k, prefix+"bench-baseline-sarama", raw, total, perRecord, &b.SaramaConsumer); err != nil {
		return nil, err
	}
	if err := gokaBaseline(ctx, k, prefix, parts, dataDir, total, perRecord, &b.GokaNoop, log); err != nil {
		return nil, err
	}
	decodeFloor(w, &b.DecodeFloor)
	if err := gokaPeer(ctx, k, raw, prefix, parts, dataDir+"-peer", total, perRecord, &b.GokaPeer); err != nil {
		return nil, err
	}
	return b, nil
}

func endOffsets(k topology.Kafka, topic string, parts int32) (uint64, error) {
	c, err := sarama.NewClient(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		return 0, fmt.Errorf("bench: connect: %w", err)
	}
	defer c.Close()
	var total uint64
	for p := range parts {
		end, err := c.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return 0, fmt.Errorf("bench: end of %s/%d: %w", topic, p, err)
		}
		total += uint64(end)
	}
	return total, nil
}

// rateCounter times the span from the first to the last of n records.
type rateCounter struct {
	n         uint64
	count     atomic.Uint64
	once      sync.Once
	first     time.Time
	cpu       time.Duration
	done      chan struct{}
	last      time.Time
	lastCPU   time.Duration
	closeOnce sync.Once
}

func newRateCounter(n uint64) *rateCounter { return &rateCounter{n: n, done: make(chan struct{})} }

// startNow starts the clock unless it runs already.
func (r *rateCounter) startNow() {
	r.once.Do(func() { r.first, r.cpu = time.Now(), cpuTime() })
}

func (r *rateCounter) add() {
	r.startNow()
	if r.count.Add(1) == r.n {
		r.closeOnce.Do(func() {
			r.last, r.lastCPU = time.Now(), cpuTime()
			close(r.done)
		})
	}
}

func (r *rateCounter) wait(ctx context.Context, timeout time.Duration) error {
	if r.n == 0 {
		return nil
	}
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("bench: baseline: %w", ctx.Err())
	case <-time.After(timeout):
		return fmt.Errorf("bench: baseline saw %d of %d records in %v", r.count.Load(), r.n, timeout)
	}
}

func (r *rateCounter) result(b *Baseline, perRecord float64) {
	if r.n > 0 {
		b.set(r.n, r.last.Sub(r.first), r.lastCPU-r.cpu, perRecord)
	}
}

type countingHandler struct{ rc *rateCounter }

// Setup starts the clock when the session begins, before the first fetch,
// so that records prefetched before the first one is handed over count.
func (h countingHandler) Setup(sarama.ConsumerGroupSession) error {
	h.rc.startNow()
	return nil
}
func (countingHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h countingHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for msg := range c.Messages() {
		h.rc.add()
		s.MarkMessage(msg, "")
	}
	return nil
}

func saramaBaseline(ctx context.Context, k topology.Kafka, group, topic string, total uint64, perRecord float64, out *Baseline) error {
	cfg := kafkaclient.Config(k)
	cg, err := sarama.NewConsumerGroup(k.Brokers, group, cfg)
	if err != nil {
		return fmt.Errorf("bench: sarama baseline: %w", err)
	}
	rc := newRateCounter(total)
	ctx, cancel := context.WithCancel(ctx)
	var g errgroup.Group
	g.Go(func() error {
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{topic}, countingHandler{rc}); err != nil && ctx.Err() == nil {
				return fmt.Errorf("bench: sarama baseline: %w", err)
			}
		}
		return nil
	})
	werr := rc.wait(ctx, 5*time.Minute)
	cancel()
	err = errors.Join(werr, g.Wait(), cg.Close())
	if err != nil {
		return err
	}
	rc.result(out, perRecord)
	return nil
}

func gokaBaseline(ctx context.Context, k topology.Kafka, prefix string, parts int32, dataDir string, total uint64, perRecord float64, out *Baseline, log *slog.Logger) error {
	t := topology.New("bench-noop", topology.WithPrefix(prefix),
		topology.WithDeadLetterTopic(processors.TopicDeadLetter, topology.WithPartitions(parts), topology.KeyedBy(processors.KeyDeviceID)))
	raw := topology.NewStream(t, processors.TopicRaw, codecs.Bytes{}, topology.WithPartitions(parts),
		topology.KeyedBy(processors.KeyDeviceID), topology.External("ingest edge"))
	rc := newRateCounter(total)
	g := t.Processor("bench-baseline-goka-noop-" + strconv.FormatInt(time.Now().UnixNano(), 36))
	topology.Consume(g, raw, func(*topology.Context, string, []byte) error {
		rc.add()
		return nil
	})
	plan, err := t.Build()
	if err != nil {
		return fmt.Errorf("bench: goka baseline: %w", err)
	}
	r, err := topology.NewRunner(plan, topology.RunnerOptions{Kafka: k, DataDir: dataDir, Logger: log, SkipTopicCreation: true})
	if err != nil {
		return fmt.Errorf("bench: goka baseline: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	werr := rc.wait(ctx, 5*time.Minute)
	cancel()
	if err := errors.Join(werr, <-errc); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("bench: goka baseline: %w", err)
	}
	rc.result(out, perRecord)
	return nil
}

// decodeFloor decodes every accepted package once with one warm decoder.
func decodeFloor(w *workload, out *Baseline) {
	var (
		dec  protocol.Decoder
		pkg  protocol.Package
		n    uint64
		msgs uint64
	)
	cpu0, t0 := cpuTime(), time.Now()
	for i := range w.items {
		it := &w.items[i]
		if it.code != 202 {
			continue
		}
		n++
		if dec.Decode(it.body, &pkg) == nil {
			msgs += uint64(len(pkg.Messages))
		}
	}
	wall, cpu := time.Since(t0), cpuTime()-cpu0
	per := 0.0
	if n > 0 {
		per = float64(w.rawMessages) / float64(n)
	}
	out.set(n, wall, cpu, per)
}
