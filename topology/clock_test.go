package topology_test

import (
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/topologytest"
)

type timed struct {
	At  time.Time
	Val int
}

// The declared record time is what a handler sees, and stream time is the
// highest record time of the partition so far: a late record does not move
// it back.
func TestRecordAndStreamTime(t *testing.T) {
	topo := topology.New("clock")
	in := topology.NewStream(topo, "in", codecs.JSON[timed]{}, topology.WithPartitions(1), topology.External("test")).
		TimedBy(func(_ string, v timed) (time.Time, bool) { return v.At, true })
	out := topology.NewStream(topo, "out", codecs.JSON[[2]time.Time]{}, topology.WithPartitions(1))
	p := topo.Processor("g")
	emit := topology.Produce(p, out)
	topology.Consume(p, in, func(c *topology.Context, key string, v timed) error {
		return emit.Emit(c, key, [2]time.Time{c.RecordTime(), c.StreamTime()})
	})
	d := topologytest.New(t, topo)
	base := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	for _, m := range []int{0, 5, 3, 7} {
		topologytest.Send(d, in, "k", timed{At: base.Add(time.Duration(m) * time.Minute), Val: m})
	}
	got := topologytest.Read(d, out)
	want := [][2]int{{0, 0}, {5, 5}, {3, 5}, {7, 7}}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		rec, st := r.Value[0], r.Value[1]
		if !rec.Equal(base.Add(time.Duration(want[i][0])*time.Minute)) || !st.Equal(base.Add(time.Duration(want[i][1])*time.Minute)) {
			t.Errorf("record %d: record time %v stream time %v, want minutes %v", i, rec, st, want[i])
		}
	}
}

// Declaring the record time twice, or after Build, is a declaration error.
func TestTimedByIsDeclaredOnce(t *testing.T) {
	topo := topology.New("clock2")
	s := topology.NewStream(topo, "in", codecs.JSON[timed]{}, topology.External("test"))
	f := func(_ string, v timed) (time.Time, bool) { return v.At, true }
	s.TimedBy(f).TimedBy(f)
	if _, err := topo.Build(); err == nil {
		t.Fatal("Build accepted a stream timed twice")
	}
}
