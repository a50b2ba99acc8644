package topology_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/topologytest"
)

// A record whose RecordTime says it has no time does not move stream time
// (its Kafka timestamp, the wall clock, would close windows early) and is
// not aggregated: no window, no dead letter.
func TestRecordWithoutTime(t *testing.T) {
	topo := topology.New("notime")
	in := topology.NewStream(topo, "in", codecs.String{}, topology.WithPartitions(1), topology.External("test")).
		TimedBy(func(_ string, v string) (time.Time, bool) {
			m, err := strconv.Atoi(v)
			return at(m), err == nil
		})
	p := topo.Processor("g")
	h := topology.Aggregate(p, in, topology.Tumbling(time.Hour), func() int { return 0 },
		func(_, _ string, n int) int { return n + 1 }, codecs.JSON[int]{})
	d := topologytest.New(t, topo)
	topologytest.SendAt(d, in, "a", at(200), "5")
	topologytest.SendAt(d, in, "b", at(300), "none") // a Kafka timestamp hours past a's window
	topologytest.SendAt(d, in, "a", at(200), "6")
	if dl := d.DeadLetters(); len(dl) != 0 {
		t.Errorf("dead letters %+v, want none", dl)
	}
	if ws := topologytest.Windows(d, h, "a", at(0), at(1)); len(ws) != 1 || ws[0].Value != 2 || ws[0].Closed {
		t.Errorf("window 10:00 of a: %+v, want open with 2", ws)
	}
	if ws := topologytest.Windows(d, h, "b", at(-1000), at(1000)); len(ws) != 0 {
		t.Errorf("windows of b, which has no time: %+v", ws)
	}
}
