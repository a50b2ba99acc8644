package processors_test

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

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

// telemetry.summaries is declared, keyed by device, produced by the
// summaries group (no longer an External placeholder).
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
		if td.ValueType != "records.Summary" || td.Key != processors.KeyDeviceID || td.External || td.ProducedBy != processors.GroupSummaries {
			t.Errorf("telemetry.summaries described as %+v", td)
		}
	}
	if !found {
		t.Fatal("telemetry.summaries is not declared")
	}
}

// summaryStore is a memStore that keeps summaries and fails their first
// writes with err.
type summaryStore struct {
	*memStore
	err      error
	failures int
	attempts int
	rows     map[[2]uint64]records.Summary
}

func (s *summaryStore) WriteSummaries(_ context.Context, ss []records.Summary) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts++
	if s.failures > 0 {
		s.failures--
		return s.err
	}
	for _, x := range ss {
		s.rows[[2]uint64{x.DeviceID, x.WindowStartMs}] = x
	}
	return nil
}

func (s *summaryStore) Summaries(_ context.Context, q sinks.SummaryQuery) ([]records.Summary, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []records.Summary
	for k, x := range s.rows {
		if k[0] == q.DeviceID {
			out = append(out, x)
		}
	}
	return out, nil
}

// A summary the store fails to write is retried as readings are: in place
// while the store is unavailable, through the retry topics when it fails
// the write while it answers; it is stored in the end, and nothing is
// dead-lettered.
func TestSinkRetriesSummaries(t *testing.T) {
	for _, c := range []struct {
		name     string
		err      error
		failures int
	}{
		{"outage", fmt.Errorf("down: %w", sinks.ErrUnavailable), 3},
		{"failed writes", fmt.Errorf("timeout: %w", sinks.ErrWriteFailed), 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			store := &summaryStore{memStore: newMemStore(), err: c.err, failures: c.failures, rows: map[[2]uint64]records.Summary{}}
			p := processors.New(processors.Config{
				SinkRetry:   topology.RetryPolicy{InPlace: 2, Delays: []time.Duration{time.Millisecond, 2 * time.Millisecond}, MaxAttempts: 8},
				SinkBackoff: topology.Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond},
			})
			d := topologytest.NewWith(t, p.Topology, topologytest.Options{Groups: []string{processors.GroupSink, processors.GroupSink + "-retry"},
				Resources: []topology.Provided{topology.Provide(processors.Store, sinks.Store(store))}})
			s := summary(device, 0, 3)
			topologytest.Send(d, p.Summaries, strconv.Itoa(device), s)
			got, _ := store.Summaries(context.Background(), sinks.SummaryQuery{DeviceID: device})
			if len(got) != 1 || !reflect.DeepEqual(got[0], s) || store.attempts != c.failures+1 {
				t.Fatalf("stored %+v after %d attempts", got, store.attempts)
			}
			if dl := d.DeadLetters(); len(dl) != 0 {
				t.Errorf("dead letters: %+v", dl)
			}
		})
	}
}
