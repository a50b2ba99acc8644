package topology

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the per-processor metrics of a topology. Create them once per
// registry with NewMetrics and share them between runners.
//
//   - watershed_processor_records_consumed_total{group,topic}: input records handled.
//   - watershed_processor_records_produced_total{group,topic}: records emitted, by output topic.
//   - watershed_processor_dead_letters_total{group,reason}: records sent to the dead-letter topic.
//   - watershed_processor_retries_total{group}: retries of transient failures.
//   - watershed_dead_letters_truncated_total{group}: dead-letter envelopes cut
//     down to fit MaxDeadLetterBytes (their reason kept, their value cut).
//   - watershed_processor_skipped_total{group,reason}: records read from the
//     dead-letter topic whose processing failed; they stay in that topic and
//     are not dead-lettered again.
//   - watershed_processor_duration_seconds{group}: time to handle one input record, retries included.
//   - watershed_processor_batch_rows{group}: rows per write of a Batcher.
//   - watershed_processor_batch_records{group}: input records per write of a Batcher.
//   - watershed_group_restarts_total{group}: restarts of a group's processor
//     by the Runner after a recoverable error.
//
// The Runner adds watershed_consumer_lag{group,topic,partition},
// watershed_processor_recovered{group} and
// watershed_processor_partitions{group} (input partitions assigned to the
// process) at scrape time.
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

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
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
			return nil, fmt.Errorf("topology: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) consumedRecord(group, topic string) { m.consumed.WithLabelValues(group, topic).Inc() }
func (m *Metrics) producedRecords(group, topic string, n int) {
	m.produced.WithLabelValues(group, topic).Add(float64(n))
}
func (m *Metrics) deadLettered(group, reason string) {
	m.deadLetters.WithLabelValues(group, reason).Inc()
}
func (m *Metrics) retried(group string)   { m.retries.WithLabelValues(group).Inc() }
func (m *Metrics) restarted(group string) { m.restarts.WithLabelValues(group).Inc() }
func (m *Metrics) processed(group string, d time.Duration) {
	m.duration.WithLabelValues(group).Observe(d.Seconds())
}

// metricsObserver adapts Metrics to the callbacks' observer.
type metricsObserver struct{ m *Metrics }

func (o metricsObserver) consumed(group, topic string)        { o.m.consumedRecord(group, topic) }
func (o metricsObserver) produced(group, topic string, n int) { o.m.producedRecords(group, topic, n) }
func (o metricsObserver) deadLettered(group, reason string)   { o.m.deadLettered(group, reason) }
func (o metricsObserver) retried(group string)                { o.m.retried(group) }
func (o metricsObserver) skipped(group, reason string) {
	o.m.skips.WithLabelValues(group, reason).Inc()
}
func (o metricsObserver) processed(group string, d time.Duration) { o.m.processed(group, d) }
func (o metricsObserver) deadLetterTruncated(group string) {
	o.m.truncated.WithLabelValues(group).Inc()
}
func (o metricsObserver) batchWritten(group string, records, rows int) {
	o.m.batchRecs.WithLabelValues(group).Observe(float64(records))
	o.m.batchRows.WithLabelValues(group).Observe(float64(rows))
}

func observerFor(m *Metrics) observer {
	if m == nil {
		return nopObserver{}
	}
	return metricsObserver{m}
}
