package processors

import (
	"context"
	"errors"
	"fmt"

	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/topology"
)

// The sink group also stores the hourly summaries of telemetry.summaries
// (sinks.SummaryStore), beside the readings: one consumer of the store,
// with the readings' outage, retry and dead-letter rules, and no group more
// to deploy. A summary replaces the stored one of its device and window,
// so a replay or a window emitted again writes one row, the newest.

// ErrNoSummaryStore is returned when the sink group's store keeps no
// summaries.
var ErrNoSummaryStore = errors.New("processors: the sink group's store keeps no summaries (sinks.SummaryStore)")

// consumeSummaries adds the summaries input to the sink group g.
func (p *Pipeline) consumeSummaries(g *topology.Processor) {
	topology.Consume(g, p.Summaries, func(c *topology.Context, key string, s records.Summary) error {
		return p.writeSummaries(c.Context(), []records.Summary{s})
	})
}

// writeSummaries writes summaries to the store, telling outages, failed
// writes and refusals apart as writeReadings does.
func (p *Pipeline) writeSummaries(ctx context.Context, summaries []records.Summary) error {
	store, ok := Store.Get(ctx)
	if !ok || store == nil {
		return topology.Transient(ErrNoSink)
	}
	ss, ok := store.(sinks.SummaryStore)
	if !ok {
		return topology.Reject("sink_refused", ErrNoSummaryStore)
	}
	return storeOutcome(ss.WriteSummaries(ctx, summaries), fmt.Sprintf("%d summaries", len(summaries)))
}

// storeOutcome classifies a store write's error: nil; an outage (wait in
// place); a failed write (retry); anything else a refusal of the rows
// (dead letters).
func storeOutcome(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sinks.ErrUnavailable):
		return topology.Outage(err)
	case errors.Is(err, sinks.ErrWriteFailed):
		return topology.Transient(err)
	default:
		return topology.Reject("sink_refused", fmt.Errorf("store refused %s: %w", what, err))
	}
}
