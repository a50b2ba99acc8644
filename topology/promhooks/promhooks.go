// Package promhooks wires a topology Runner's hooks to Prometheus: Metrics
// implements every topology.Hook* interface with the counters and
// histograms below, and RegisterRunner adds the collectors read at scrape
// time (consumer lag, recovery, retry topics). The framework itself does
// not import the Prometheus client.
package promhooks

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watershed-io/watershed/topology"
)

// Metrics are the per-processor metrics of a topology, given to a Runner as
// a hook (RunnerOptions.Hooks). Create them once per registry with New and
// share them between runners.
//
//   - watershed_processor_records_consumed_total{group,topic}: input records handled.
//   - watershed_processor_records_produced_total{group,topic}: records emitted, by output topic.
//   - watershed_processor_dead_letters_total{group,reason}: records sent to the dead-letter topic.
//   - watershed_processor_retries_total{group}: retries of transient failures.
//   - watershed_dead_letters_truncated_total{group}: dead-letter envelopes cut
//     down to fit topology.MaxDeadLetterBytes (their reason kept, their value cut).
//   - watershed_processor_skipped_total{group,reason}: records read from the
//     dead-letter topic whose processing failed; they stay in that topic and
//     are not dead-lettered again.
//   - watershed_processor_duration_seconds{group}: time to handle one input record, retries included.
//   - watershed_processor_batch_rows{group}: rows per write of a Batcher.
//   - watershed_processor_batch_records{group}: input records per write of a Batcher.
//   - watershed_group_restarts_total{group}: restarts of a group's processor
//     by the Runner after a recoverable error.
//
// RegisterRunner adds watershed_consumer_lag{group,topic,partition},
// watershed_processor_recovered{group}, watershed_processor_partitions{group}, watershed_retry_records{group,topic}
// and watershed_retry_oldest_age_seconds{group,topic} at scrape time.
type Metrics struct {
	consumed    *prometheus.CounterVec
	produced    *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	retries     *prometheus.CounterVec
	skips       *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	batchRows   *prometheus.HistogramVec
	batchRecs   *prometheus.HistogramVec
	restarts    *prometheus.CounterVec
	truncated   *prometheus.CounterVec
}

// New creates the metrics and registers them with reg.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "watershed_processor_records_consumed_total",
			Help: "Input records handled by a processor group, by input topic.",
		}, []string{"group", "topic"}),
		produced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "watershed_processor_records_produced_total",
			Help: "Records emitted by a processor group, by output topic.",
		}, []string{"group", "topic"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "watershed_processor_dead_letters_total",
			Help: "Records a processor group sent to the dead-letter topic, by reason.",
		}, []string{"group", "reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "watershed_processor_retries_total",
			Help: "Retries of records whose processing failed transiently.",
		}, []string{"group"}),
		skips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "watershed_processor_skipped_total",
			Help: "Records read from the dead-letter topic whose processing failed; they stay there.",
		}, []string{"group", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "watershed_processor_duration_seconds",
			Help:    "Time to handle one input record, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 4, 10),
		}, []string{"group"}),
		batchRows: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "watershed_processor_batch_rows",
			Help:    "Rows per write of a processor's Batcher.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}, []string{"group"}),
		batchRecs: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "watershed_processor_batch_records",
			Help:    "Input records per write of a processor's Batcher.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}, []string{"group"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "watershed_group_restarts_total",
			Help: "Restarts of a group's processor by the runner after a recoverable error (a revoked partition with unwritten records, a lost broker).",
		}, []string{"group"}),
		truncated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "watershed_dead_letters_truncated_total",
			Help: "Dead-letter envelopes cut down to fit the dead-letter topic: their reason kept, their value cut and marked.",
		}, []string{"group"}),
	}
	for _, c := range []prometheus.Collector{m.consumed, m.produced, m.deadLetters, m.retries, m.skips, m.duration, m.batchRows, m.batchRecs, m.restarts, m.truncated} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("promhooks: register metrics: %w", err)
		}
	}
	return m, nil
}

// OnRecordConsumed counts an input record (topology.HookRecordConsumed).
func (m *Metrics) OnRecordConsumed(group, topic string) {
	m.consumed.WithLabelValues(group, topic).Inc()
}

// OnRecordsProduced counts emitted records (topology.HookRecordsProduced).
func (m *Metrics) OnRecordsProduced(group, topic string, n int) {
	m.produced.WithLabelValues(group, topic).Add(float64(n))
}

// OnDeadLettered counts a dead letter (topology.HookDeadLettered).
func (m *Metrics) OnDeadLettered(group, reason string) {
	m.deadLetters.WithLabelValues(group, reason).Inc()
}

// OnRetried counts a retry (topology.HookRetried).
func (m *Metrics) OnRetried(group string) { m.retries.WithLabelValues(group).Inc() }

// OnSkipped counts a skipped record (topology.HookSkipped).
func (m *Metrics) OnSkipped(group, reason string) { m.skips.WithLabelValues(group, reason).Inc() }

// OnRecordProcessed observes a record's handling time
// (topology.HookRecordProcessed).
func (m *Metrics) OnRecordProcessed(group string, d time.Duration) {
	m.duration.WithLabelValues(group).Observe(d.Seconds())
}

// OnBatchWritten observes a Batcher's write (topology.HookBatchWritten).
func (m *Metrics) OnBatchWritten(group string, records, rows int) {
	m.batchRecs.WithLabelValues(group).Observe(float64(records))
	m.batchRows.WithLabelValues(group).Observe(float64(rows))
}

// OnDeadLetterTruncated counts a cut envelope
// (topology.HookDeadLetterTruncated).
func (m *Metrics) OnDeadLetterTruncated(group string) { m.truncated.WithLabelValues(group).Inc() }

// OnGroupStarted shows the group's restart counter at 0
// (topology.HookGroupStarted).
func (m *Metrics) OnGroupStarted(group string) { m.restarts.WithLabelValues(group) }

// OnGroupRestarted counts a restart (topology.HookGroupRestarted).
func (m *Metrics) OnGroupRestarted(group string) { m.restarts.WithLabelValues(group).Inc() }

var (
	lagDesc = prometheus.NewDesc("watershed_consumer_lag",
		"Records in an input partition that the group has not committed yet.",
		[]string{"group", "topic", "partition"}, nil)
	recoveredDesc = prometheus.NewDesc("watershed_processor_recovered",
		"1 when the group's tables in this process are recovered and it processes records.",
		[]string{"group"}, nil)
	partitionsDesc = prometheus.NewDesc("watershed_processor_partitions",
		"Input partitions of the group assigned to this process (0 while its processor is down).",
		[]string{"group"}, nil)
	retryDepthDesc = prometheus.NewDesc("watershed_retry_records",
		"Records waiting in a retry topic (not yet committed by its retry group).",
		[]string{"group", "topic"}, nil)
	retryAgeDesc = prometheus.NewDesc("watershed_retry_oldest_age_seconds",
		"Age of the oldest record waiting in a retry topic (0 when none waits).",
		[]string{"group", "topic"}, nil)
)

// RegisterRunner registers with reg the collectors of r read at scrape
// time: consumer lag, recovery and retry topics. Warnings (a lag that
// cannot be read) go to log (slog.Default() when nil).
func RegisterRunner(reg prometheus.Registerer, r *topology.Runner, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	if err := reg.Register(&runnerCollector{r: r, log: log}); err != nil {
		return fmt.Errorf("promhooks: register runner metrics: %w", err)
	}
	return nil
}

// runnerCollector reports consumer lag and recovery at scrape time.
type runnerCollector struct {
	r   *topology.Runner
	log *slog.Logger
}

func (c *runnerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagDesc
	ch <- recoveredDesc
	ch <- partitionsDesc
	ch <- retryDepthDesc
	ch <- retryAgeDesc
}

func (c *runnerCollector) Collect(ch chan<- prometheus.Metric) {
	status := c.r.Status()
	for _, s := range status {
		v := 0.0
		if s.Recovered {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(recoveredDesc, prometheus.GaugeValue, v, s.Group)
		ch <- prometheus.MustNewConstMetric(partitionsDesc, prometheus.GaugeValue, float64(s.Partitions), s.Group)
	}
	if len(status) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lags, err := c.r.Lag(ctx)
	if err != nil {
		c.log.Warn("consumer lag unavailable", "err", err)
		return
	}
	for _, l := range lags {
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(l.Lag), l.Group, l.Topic, strconv.Itoa(int(l.Partition)))
	}
	for _, b := range c.r.RetryBacklog(ctx, lags) {
		ch <- prometheus.MustNewConstMetric(retryDepthDesc, prometheus.GaugeValue, float64(b.Records), b.Group, b.Topic)
		age := 0.0
		if !b.Oldest.IsZero() {
			age = time.Since(b.Oldest).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(retryAgeDesc, prometheus.GaugeValue, age, b.Group, b.Topic)
	}
}
