package topology_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/topologytest"
)

// countingCodec counts its decodes.
type countingCodec struct {
	codecs.JSON[int]
	decodes *atomic.Int64
}

func (c countingCodec) Decode(b []byte) (int, error) {
	c.decodes.Add(1)
	return c.JSON.Decode(b)
}

// A group consumes one stream several ways (a handler and two aggregates,
// as Kafka Streams builds several operations on one stream): each record
// is decoded once, its handlers run in the order declared, and a record
// late for both aggregates goes to the dead-letter topic once.
func TestGroupConsumesAStreamSeveralWays(t *testing.T) {
	var decodes atomic.Int64
	topo := topology.New("many")
	in := topology.NewStream[int](topo, "in", countingCodec{decodes: &decodes}, topology.WithPartitions(1), topology.External("test"))
	out := topology.NewStream(topo, "out", codecs.String{}, topology.WithPartitions(1))
	p := topo.Processor("g")
	emit := topology.Produce(p, out)
	topology.Consume(p, in, func(c *topology.Context, key string, v int) error {
		return emit.Emit(c, key, fmt.Sprintf("seen %d", v))
	})
	sum := func(_ string, v, n int) int { return n + v }
	closed := func(what string) topology.AggregateOption {
		return topology.OnClose(func(c *topology.Context, key string, w topology.Window, n int) error {
			return emit.Emit(c, key, fmt.Sprintf("%s %s %d", what, w.Start.Format("15:04"), n))
		})
	}
	topology.Aggregate(p, in, topology.Tumbling(time.Hour), func() int { return 0 }, sum, codecs.JSON[int]{},
		topology.Named("hours"), closed("hour"))
	topology.Aggregate(p, in, topology.Tumbling(30*time.Minute), func() int { return 0 }, sum, codecs.JSON[int]{},
		topology.Named("halves"), closed("half"))
	topology.Consume(p, in, func(c *topology.Context, key string, v int) error {
		return emit.Emit(c, key, fmt.Sprintf("after %d", v))
	})
	d := topologytest.New(t, topo)
	topologytest.SendAt(d, in, "a", at(10), 1)
	topologytest.SendAt(d, in, "a", at(40), 2)
	topologytest.SendAt(d, in, "a", at(61), 4) // closes 10:00 and 10:30
	topologytest.SendAt(d, in, "a", at(20), 8) // late for both
	want := []string{
		"seen 1", "after 1",
		"seen 2", "after 2", "half 10:00 1", // windows close after the handlers
		"seen 4", "after 4", "hour 10:00 3", "half 10:30 2",
		"seen 8", "after 8",
	}
	got := told(topologytest.Read(d, out))
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("outputs %q\nwant    %q", got, want)
	}
	if n := decodes.Load(); n != 4 {
		t.Errorf("%d decodes of 4 records, want one each", n)
	}
	if dead := d.DeadLetters(); len(dead) != 1 || dead[0].Reason != topology.ReasonLate {
		t.Errorf("dead letters %+v, want the late record once", dead)
	}
}
