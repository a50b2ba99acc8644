package timewindows_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/examples/timewindows"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/topologytest"
)

func declare() (*topology.Topology, topology.Stream[timewindows.Reading]) {
	t := topology.New("sensors")
	readings := topology.NewStream(t, "readings", codecs.JSON[timewindows.Reading]{}, topology.External("sensors")).
		TimedBy(func(_ string, r timewindows.Reading) (time.Time, bool) { return r.At, true })
	return t, readings
}

var ten = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func TestHourly(t *testing.T) {
	topo, readings := declare()
	counts, windows := timewindows.Hourly(topo, readings)
	d := topologytest.New(t, topo)
	for _, m := range []int{5, 30, 59, 65, 69} { // 65 and 69: the next hour
		topologytest.Send(d, readings, "s1", timewindows.Reading{At: ten.Add(time.Duration(m) * time.Minute)})
	}
	if got := topologytest.Read(d, counts); len(got) != 0 {
		t.Fatalf("emitted within the grace: %+v", got)
	}
	if w := topologytest.Windows(d, windows, "s1", ten, ten.Add(2*time.Hour)); len(w) != 2 || w[0].Value != 3 || w[1].Value != 2 {
		t.Fatalf("windows %+v", w)
	}
	topologytest.Send(d, readings, "s1", timewindows.Reading{At: ten.Add(70 * time.Minute)})
	got := topologytest.Read(d, counts)
	if len(got) != 1 || got[0].Key != "s1" || got[0].Value.Count != 3 || !got[0].Value.Start.Equal(ten) {
		t.Fatalf("emitted %+v, want s1's 10:00 count of 3", got)
	}
}

func TestSilent(t *testing.T) {
	topo, readings := declare()
	alerts := timewindows.Silent(topo, readings)
	d := topologytest.New(t, topo)
	d.SetWall(ten)
	topologytest.Send(d, readings, "s1", timewindows.Reading{})
	d.AdvanceWall(9 * time.Minute)
	topologytest.Send(d, readings, "s1", timewindows.Reading{}) // moves the timer to 10:19
	d.AdvanceWall(9 * time.Minute)
	if got := topologytest.Read(d, alerts); len(got) != 0 {
		t.Fatalf("alerted early: %+v", got)
	}
	d.AdvanceWall(time.Minute)
	d.AdvanceWall(time.Hour)
	got := topologytest.Read(d, alerts)
	if len(got) != 1 || got[0].Key != "s1" || !got[0].Value.LastSeen.Equal(ten.Add(9*time.Minute)) {
		t.Fatalf("alerts %+v, want one for s1 last seen at 10:09", got)
	}
}

// docs/time.md shows this package's code verbatim; this keeps them equal.
func TestPageShowsThisCode(t *testing.T) {
	page, err := os.ReadFile("../../docs/time.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"hourly.go", "silent.go"} {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(page), "```go\n"+string(src)+"```") {
			t.Errorf("docs/time.md does not show %s as it is; paste it again", name)
		}
	}
}
