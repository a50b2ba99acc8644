package processors_test

import (
	"context"
	"math"
	"reflect"
	"strconv"
	"testing"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/processors"
)

// A summaries process stops in the middle of a device's hour; a replica on
// a fresh folder rebuilds the window from its changelog, takes the rest of
// the hour, and closes it: the summary is the one the readings give,
// exactly, with a package sent again before and after the stop counted
// once.
func TestSummaryRestoredMidWindowIsExact(t *testing.T) {
	_, k, p := startPipeline(t)
	key, other := strconv.Itoa(device), strconv.Itoa(device+1)
	w0 := uint64(baseTime) - uint64(baseTime)%hourMs
	pkgs := make([]records.Readings, 120)
	for i := range pkgs {
		ms := w0 + uint64(i)*20_000 + 7
		r := fixAt(device, ms, float64(481_000_000+i*2_700)/1e7, float64(i%90))
		if i == 33 {
			r.LonDeg = 1.0 / 3 // no compact form
		}
		items := []records.Reading{r}
		if i%5 == 0 {
			items = append(items, records.Reading{DeviceID: device, TimeMs: ms + 1, ContentCRC: uint32(i), Type: protocol.TypeEvent,
				EventCode: float64(protocol.EventHarshBrake)})
		}
		pkgs[i] = records.Readings{DeviceID: device, RawOffset: int64(i + 1), Part: 0, ReceivedMs: int64(ms), Items: items}
	}
	want := processors.InitSummary(device, w0)
	for i := range pkgs {
		processors.AddSummary(&want, &pkgs[i])
	}

	run := startGroup(t, k, p, processors.GroupSummaries, t.TempDir())
	send(t, k, p.Normalized, key, pkgs[:60]...)
	send(t, k, p.Normalized, key, pkgs[10]) // sent again before the stop
	waitCommitted(t, context.Background(), run.r)
	run.stop(t)

	replica := startGroup(t, k, p, processors.GroupSummaries, t.TempDir())
	send(t, k, p.Normalized, key, pkgs[60:]...)
	send(t, k, p.Normalized, key, pkgs[20], pkgs[70]) // and after it
	closing := w0 + hourMs + uint64(processors.SummaryGrace.Milliseconds())
	send(t, k, p.Normalized, other, records.Readings{DeviceID: device + 1, RawOffset: 1000, ReceivedMs: int64(closing),
		Items: []records.Reading{fixAt(device+1, closing, 47, 1)}})
	waitCommitted(t, context.Background(), replica.r)
	replica.stop(t)

	var got []records.Summary
	for _, r := range readTopic(t, k, p.Summaries.Name()) {
		s, err := p.Summaries.Codec().Decode(r.value)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	exact := processors.Summarize(&want)
	if len(got) != 1 || !reflect.DeepEqual(got[0], exact) || math.Float64bits(got[0].DistanceM) != math.Float64bits(exact.DistanceM) {
		t.Fatalf("summaries %+v\nwant one: %+v", got, exact)
	}
	if exact.Messages != 120+24 || exact.Harsh[protocol.EventHarshBrake] != 24 {
		t.Errorf("implausible truth: %+v", exact)
	}
}
