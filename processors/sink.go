package processors

import (
	"context"
	"errors"
	"fmt"

	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/topology"
)

// The sink group writes every reading of telemetry.normalized to the store
// (and every summary of telemetry.summaries: summariessink.go).

// ErrNoSink is returned when the sink group is run without a store.
var ErrNoSink = errors.New("processors: the sink group needs a store (processors.Store)")

// Store is the sink group's store, a resource handed to the Runner
// (topology.Provide(processors.Store, store) in RunnerOptions.Resources)
// rather than to the declaration: describing the pipeline or running its
// other groups needs none.
var Store = topology.NewResource[sinks.Store]("store")

func (p *Pipeline) declareSink() {
	// A write the store fails (sinks.ErrWriteFailed) and keeps failing while
	// the store answers moves to the retry topics so that its partition
	// goes on. A write failing as unavailable (sinks.ErrUnavailable) is an
	// outage whatever the probe answers: the sink pauses in place.
	retry := p.cfg.SinkRetry
	if retry.Probe == nil {
		retry.Probe = func(ctx context.Context) error {
			store, ok := Store.Get(ctx)
			if !ok || store == nil {
				return ErrNoSink
			}
			if pinger, ok := store.(sinks.Pinger); ok {
				return pinger.Ping(ctx)
			}
			return nil
		}
	}
	opts := []topology.ProcessorOption{
		topology.WithDescription("write every reading to the store, batched across records, and every hourly summary; offsets commit only after the store acknowledged"),
		topology.WithRetryTopics(retry),
	}
	if p.cfg.SinkBackoff != (topology.Backoff{}) {
		opts = append(opts, topology.RetryBackoff(p.cfg.SinkBackoff))
	}
	g := p.Topology.Processor(GroupSink, opts...)
	topology.Uses(g, Store)
	batch := topology.Batch(g, p.cfg.SinkBatch, p.writeReadings)
	topology.Consume(g, p.Normalized, func(c *topology.Context, key string, rs records.Readings) error {
		if err := p.cfg.SinkAudit.Delivered(c.Partition(), c.Offset(), rs.Items); err != nil {
			return err
		}
		return batch.Add(c, rs.Items)
	})
	p.consumeSummaries(g)
}

// writeReadings writes rows of one or many records to the store and tells
// a store that is down (an outage: wait in place) from a write it failed
// (retry) and from rows it refuses (dead letters).
func (p *Pipeline) writeReadings(ctx context.Context, rows []records.Reading) error {
	store, ok := Store.Get(ctx)
	if !ok || store == nil {
		return topology.Transient(ErrNoSink)
	}
	if err := storeOutcome(store.Write(ctx, rows), fmt.Sprintf("%d readings", len(rows))); err != nil {
		return err
	}
	return p.cfg.SinkAudit.Wrote(rows)
}
