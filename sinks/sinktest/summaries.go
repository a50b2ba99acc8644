package sinktest

import (
	"context"
	"testing"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/sinks"
)

// RunSummaries runs the conformance suite of sinks.SummaryStore; open is
// as for Run.
func RunSummaries(t *testing.T, open func(t *testing.T) sinks.SummaryStore) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s sinks.SummaryStore)
	}{
		{"WriteReadBack", testSummariesReadBack},
		{"RewriteReplaces", testSummariesRewrite},
		{"Bounds", testSummariesBounds},
	}
	runEach(t, open, tests)
}

// SampleSummary returns the summary of device dev's window at hour h after
// the suite's base time, with every field set.
func SampleSummary(dev uint64, h uint64) records.Summary {
	start := baseMs + h*records.SummaryWindowMs
	return records.Summary{DeviceID: dev, WindowStartMs: start, WindowEndMs: start + records.SummaryWindowMs,
		Messages: 100 + h, GPSFixes: 40, DistanceM: 1234.5 + float64(h), MaxSpeedKmh: 97.25, AvgSpeedKmh: 41.5,
		Harsh:   map[protocol.EventCode]uint64{protocol.EventHarshBrake: 2, protocol.EventHarshCorner: h + 1},
		FirstMs: start + 17, LastMs: start + records.SummaryWindowMs - 3}
}

func writeSummaries(t *testing.T, s sinks.SummaryStore, ss ...records.Summary) {
	t.Helper()
	if err := s.WriteSummaries(context.Background(), ss); err != nil {
		t.Fatalf("WriteSummaries(%d): %v", len(ss), err)
	}
}

func summaries(t *testing.T, s sinks.SummaryStore, q sinks.SummaryQuery) []records.Summary {
	t.Helper()
	got, err := s.Summaries(context.Background(), q)
	if err != nil {
		t.Fatalf("Summaries(%+v): %v", q, err)
	}
	return got
}

func testSummariesReadBack(t *testing.T, s sinks.SummaryStore) {
	// Written out of order, with neighbouring devices.
	writeSummaries(t, s, SampleSummary(5, 2), SampleSummary(5, 0), SampleSummary(4, 1), SampleSummary(6, 1), SampleSummary(5, 1))
	none := SampleSummary(5, 3)
	none.Harsh, none.GPSFixes, none.DistanceM, none.MaxSpeedKmh, none.AvgSpeedKmh = nil, 0, 0, 0, 0
	writeSummaries(t, s, none)
	equal(t, "device 5", summaries(t, s, sinks.SummaryQuery{DeviceID: 5}),
		[]records.Summary{SampleSummary(5, 0), SampleSummary(5, 1), SampleSummary(5, 2), none})
	equal(t, "device 4", summaries(t, s, sinks.SummaryQuery{DeviceID: 4}), []records.Summary{SampleSummary(4, 1)})
	equal(t, "device 7", summaries(t, s, sinks.SummaryQuery{DeviceID: 7}), nil)
	writeSummaries(t, s)
}

func testSummariesRewrite(t *testing.T, s sinks.SummaryStore) {
	first := SampleSummary(8, 0)
	writeSummaries(t, s, first, SampleSummary(8, 1))
	again := first
	again.Messages, again.LastMs = first.Messages+5, first.LastMs+1
	again.Harsh = map[protocol.EventCode]uint64{protocol.EventHarshAccel: 1}
	writeSummaries(t, s, again)
	writeSummaries(t, s, again)
	equal(t, "rewritten", summaries(t, s, sinks.SummaryQuery{DeviceID: 8}), []records.Summary{again, SampleSummary(8, 1)})
}

func testSummariesBounds(t *testing.T, s sinks.SummaryStore) {
	var all []records.Summary
	for h := uint64(0); h < 6; h++ {
		all = append(all, SampleSummary(9, h))
	}
	writeSummaries(t, s, all...)
	hour := func(h uint64) sinks.SummaryQuery {
		return sinks.SummaryQuery{DeviceID: 9, From: msTime(baseMs + h*records.SummaryWindowMs)}
	}
	to := func(q sinks.SummaryQuery, h uint64) sinks.SummaryQuery {
		q.To = msTime(baseMs + h*records.SummaryWindowMs)
		return q
	}
	for _, c := range []struct {
		name string
		q    sinks.SummaryQuery
		want []records.Summary
	}{
		{"from inclusive", hour(2), all[2:]},
		{"to exclusive", to(sinks.SummaryQuery{DeviceID: 9}, 3), all[:3]},
		{"from and to", to(hour(1), 4), all[1:4]},
		{"start inside a window", sinks.SummaryQuery{DeviceID: 9, From: msTime(baseMs + 1), To: msTime(baseMs + records.SummaryWindowMs + 1)}, all[1:2]},
		{"empty", to(hour(2), 2), nil},
		{"reversed", to(hour(4), 2), nil},
		{"after all", hour(6), nil},
	} {
		equal(t, c.name, summaries(t, s, c.q), c.want)
	}
}
