package topology_test

import (
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/topologytest"
)

// A record that leaves its window's aggregate as it was writes nothing:
// no store write and no changelog record (a maximum, a set, a marker); one
// that changes it writes as always, and the window reads right after both.
func TestUnchangedAggregateWritesNothing(t *testing.T) {
	topo := topology.New("unch")
	in := topology.NewStream(topo, "in", codecs.JSON[int]{}, topology.WithPartitions(1), topology.External("test"))
	h := topology.Aggregate(topo.Processor("g"), in, topology.Tumbling(time.Hour), func() int { return 0 },
		func(_ string, v, agg int) int { return max(v, agg) }, codecs.JSON[int]{})
	d := topologytest.New(t, topo)
	at := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	send := func(min, v int) int {
		topologytest.SendAt(d, in, "a", at.Add(time.Duration(min)*time.Minute), v)
		return len(d.ReadRaw(h.Name()))
	}
	if n := send(0, 5); n != 1 {
		t.Fatalf("a new window wrote %d changelog records, want 1", n)
	}
	if n := send(1, 3); n != 0 {
		t.Errorf("a record leaving the maximum at 5 wrote %d changelog records, want none", n)
	}
	if n := send(2, 5); n != 0 {
		t.Errorf("a record equal to the maximum wrote %d changelog records, want none", n)
	}
	if n := send(3, 9); n != 1 {
		t.Errorf("a new maximum wrote %d changelog records, want 1", n)
	}
	if ws := topologytest.Windows(d, h, "a", at, at.Add(time.Hour)); len(ws) != 1 || ws[0].Value != 9 {
		t.Fatalf("window after the records = %+v; want the maximum 9", ws)
	}
}
