package topologytest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/topologytest"
)

// ReadRaw reads any topic of the topology, a changelog too: each window
// update is one record there, and a second read returns only what came
// since the first.
func TestReadRawReadsAChangelog(t *testing.T) {
	topo := topology.New("raw")
	in := topology.NewStream(topo, "in", codecs.String{}, topology.WithPartitions(1), topology.External("test"))
	h := topology.Aggregate(topo.Processor("g"), in, topology.Tumbling(time.Hour), func() string { return "" },
		func(_, v, agg string) string { return agg + v }, codecs.String{})
	d := topologytest.New(t, topo)
	at := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	topologytest.SendAt(d, in, "a", at, "xy")
	topologytest.SendAt(d, in, "a", at.Add(time.Minute), "z")
	var aggs []string
	for _, r := range d.ReadRaw(h.Name()) {
		if v := string(r.Value); strings.Contains(r.Key, "a") && strings.HasSuffix(v, "xy") {
			aggs = append(aggs, "xy")
		} else if strings.HasSuffix(v, "xyz") {
			aggs = append(aggs, "xyz")
		}
	}
	if strings.Join(aggs, ",") != "xy,xyz" {
		t.Fatalf("window changes of a ending in %v, want xy then xyz", aggs)
	}
	if rest := d.ReadRaw(h.Name()); len(rest) != 0 {
		t.Errorf("a second read returned %d records again", len(rest))
	}
}
