package processors_test

import (
	"context"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/sinks/local"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/topologytest"
)

func summary(device, window uint64, messages uint64) records.Summary {
	start := baseTime - baseTime%records.SummaryWindowMs + window*records.SummaryWindowMs
	return records.Summary{DeviceID: device, WindowStartMs: start, WindowEndMs: start + records.SummaryWindowMs,
		Messages: messages, GPSFixes: 1, DistanceM: 12.5, MaxSpeedKmh: 30, AvgSpeedKmh: 30,
		Harsh: map[protocol.EventCode]uint64{protocol.EventHarshBrake: 1}, FirstMs: start + 1, LastMs: start + 2}
}

// The sink group stores every summary of telemetry.summaries: a window
// written twice (a replay) is one row, a later update of it replaces it.
func TestSinkStoresSummaries(t *testing.T) {
	store, err := local.Open(t.TempDir(), local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	p := processors.New(processors.Config{})
	d := topologytest.NewWith(t, p.Topology, topologytest.Options{Groups: []string{processors.GroupSink},
		Resources: []topology.Provided{topology.Provide(processors.Store, sinks.Store(store))}})
	key := strconv.Itoa(device)
	first, other, updated := summary(device, 0, 10), summary(device, 1, 4), summary(device, 0, 11)
	topologytest.Send(d, p.Summaries, key, first)
	topologytest.Send(d, p.Summaries, key, first) // a replay
	topologytest.Send(d, p.Summaries, key, other)
	got, err := store.Summaries(context.Background(), sinks.SummaryQuery{DeviceID: device})
	if err != nil || !reflect.DeepEqual(got, []records.Summary{first, other}) {
		t.Fatalf("stored %+v, %v; want the two windows once", got, err)
	}
	topologytest.Send(d, p.Summaries, key, updated)
	got, err = store.Summaries(context.Background(), sinks.SummaryQuery{DeviceID: device})
	if err != nil || !reflect.DeepEqual(got, []records.Summary{updated, other}) {
		t.Fatalf("after the update: %+v, %v", got, err)
	}
	if dl := d.DeadLetters(); len(dl) != 0 {
		t.Errorf("dead letters: %+v", dl)
	}
}

// A store that keeps no summaries refuses them: they go to the dead-letter
// topic with reason sink_refused, and the readings still flow.
func TestSinkSummariesWithoutSummaryStore(t *testing.T) {
	f := newFixture(t, processors.Config{})
	topologytest.Send(f.d, f.p.Summaries, strconv.Itoa(device), summary(device, 0, 1))
	dl := f.d.DeadLetters()
	if len(dl) != 1 || dl[0].Reason != "sink_refused" || !strings.Contains(dl[0].Error, "keeps no summaries") || dl[0].Topic != f.p.Summaries.Name() {
		t.Fatalf("dead letters = %+v", dl)
	}
	f.send(encode(t, baseTime, 1, gps(baseTime, 5)))
	if rows, _ := f.store.Readings(context.Background(), sinks.Query{DeviceID: device}); len(rows) != 1 {
		t.Errorf("%d rows stored after the refused summary, want 1", len(rows))
	}
}

// telemetry.summaries is declared, keyed by device, with its placeholder
// producer until the summaries group is declared.
func TestSummariesStreamDeclared(t *testing.T) {
	p := processors.New(processors.Config{})
	if err := p.Topology.Validate(); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, td := range p.Topology.Describe().Topics {
		if td.Name != processors.TopicSummaries {
			continue
		}
		found = true
		if td.ValueType != "records.Summary" || td.Key != processors.KeyDeviceID || !td.External || !strings.Contains(td.ProducedBy, "placeholder") {
			t.Errorf("telemetry.summaries described as %+v", td)
		}
	}
	if !found {
		t.Fatal("telemetry.summaries is not declared")
	}
}
