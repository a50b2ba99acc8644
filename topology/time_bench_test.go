package topology_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/topologytest"
)

// benchTopo is one group consuming in with handle, or aggregating it when
// agg is set, over 1,000 keys.
func benchTopo(agg bool, handle func(p *topology.Processor) topology.Handler[string]) (*topology.Topology, topology.Stream[string]) {
	topo := topology.New("bench")
	in := topology.NewStream(topo, "in", codecs.String{}, topology.WithPartitions(1), topology.External("bench"))
	p := topo.Processor("g")
	if agg {
		topology.Aggregate(p, in, topology.Tumbling(time.Hour).Grace(10*time.Minute),
			func() int { return 0 }, func(_, _ string, n int) int { return n + 1 }, codecs.JSON[int]{})
	} else {
		topology.Consume(p, in, handle(p))
	}
	return topo, in
}

func sendAll(b *testing.B, d *topologytest.Driver, in topology.Stream[string]) {
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		// 1,000 keys, a minute apart per key: an hour's window takes 60
		// updates, then closes.
		topologytest.SendAt(d, in, "k"+strconv.Itoa(i%1000), t0.Add(time.Duration(i/1000)*time.Minute), "x")
	}
}

// The cost of one record through the test driver with a handler that does
// nothing: the baseline of the two below.
func BenchmarkRecordBaseline(b *testing.B) {
	topo, in := benchTopo(false, func(*topology.Processor) topology.Handler[string] {
		return func(*topology.Context, string, string) error { return nil }
	})
	sendAll(b, topologytest.New(b, topo), in)
}

// One windowed-aggregate update per record (hourly tumbling count), its
// changelog record, and the closing of the windows that fall due.
func BenchmarkWindowedAggregate(b *testing.B) {
	topo, in := benchTopo(true, nil)
	sendAll(b, topologytest.New(b, topo), in)
}

// One timer schedule (a move, after the first) per record.
func BenchmarkTimerSchedule(b *testing.B) {
	topo, in := benchTopo(false, func(p *topology.Processor) topology.Handler[string] {
		tm := topology.Timer(p, "t", codecs.String{}, func(*topology.Context, string, string) error { return nil })
		return func(c *topology.Context, key, v string) error {
			return tm.AtWallTime(c, key, c.Now().Add(time.Hour), v)
		}
	})
	sendAll(b, topologytest.New(b, topo), in)
}

// Firing due timers: b.N timers scheduled, then fired by one tick; the
// time is per fired timer (the scheduling is not timed).
func BenchmarkTimerFire(b *testing.B) {
	fired := 0
	topo, in := benchTopo(false, func(p *topology.Processor) topology.Handler[string] {
		tm := topology.Timer(p, "t", codecs.String{}, func(*topology.Context, string, string) error { fired++; return nil })
		return func(c *topology.Context, key, v string) error {
			return tm.AtWallTime(c, key, c.Now().Add(time.Hour), v)
		}
	})
	d := topologytest.New(b, topo)
	d.SetWall(t0)
	for i := range b.N {
		topologytest.Send(d, in, "k"+strconv.Itoa(i), "x")
	}
	b.ReportAllocs()
	b.ResetTimer()
	d.AdvanceWall(2 * time.Hour)
	b.StopTimer()
	if fired != b.N {
		b.Fatalf("fired %d of %d", fired, b.N)
	}
}
