package speeding_test

import (
	"os"
	"strings"
	"testing"

	"github.com/watershed-io/watershed/assembly"
	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/examples/speeding"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/settings"
	"github.com/watershed-io/watershed/topology/topologytest"
)

func TestSpeeding(t *testing.T) {
	a, err := assembly.New(speeding.Group()).Build(processors.Config{}, settings.Values{})
	if err != nil {
		t.Fatal(err)
	}
	events, err := assembly.StreamOf[speeding.Event](a, speeding.Topic)
	if err != nil {
		t.Fatal(err)
	}
	counts, err := assembly.TableOf[int](a, "speeding-table")
	if err != nil {
		t.Fatal(err)
	}
	d := topologytest.New(t, a.Topology, "speeding")

	gps := func(at uint64, kmh float64) records.Reading {
		return records.Reading{DeviceID: 7, TimeMs: at, Type: protocol.TypeGPS, SpeedKmh: kmh}
	}
	topologytest.Send(d, a.Normalized, "7", records.Readings{DeviceID: 7, Items: []records.Reading{
		gps(1, 120), gps(2, 140), {DeviceID: 7, TimeMs: 3, Type: protocol.TypeEngine, RPM: 9000}, gps(4, 131),
	}})
	topologytest.Send(d, a.Normalized, "7", records.Readings{DeviceID: 7, Items: []records.Reading{gps(5, 100)}})

	got := topologytest.Read(d, events)
	if len(got) != 2 || got[0].Value.SpeedKmh != 140 || got[1].Value.Count != 2 || got[1].Key != "7" {
		t.Fatalf("events = %+v", got)
	}
	if n, _ := topologytest.TableValue(d, counts, "7"); n != 2 {
		t.Errorf("count = %d, want 2", n)
	}
}

// The guide shows this package's code verbatim; this keeps them equal.
func TestGuideShowsThisCode(t *testing.T) {
	guide, err := os.ReadFile("../../docs/adding-a-processor.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"speeding.go", "speeding_test.go"} {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(guide), "```go\n"+string(src)+"```") {
			t.Errorf("docs/adding-a-processor.md does not show %s as it is; paste it again", name)
		}
	}
}
