// Package timewindows holds the examples of docs/time.md, compiled and
// tested: an hourly tumbling count, a silent-sensor timer, an enrichment
// join and a lookup.
package timewindows

import (
	"time"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
)

// Reading is a sensor's measurement.
type Reading struct {
	At    time.Time `json:"at"`
	Value float64   `json:"value"`
}

// HourlyCount is how many readings a sensor took in one hour.
type HourlyCount struct {
	Start time.Time `json:"start"`
	Count int       `json:"count"`
}

// Hourly counts each sensor's readings per hour of measurement time, with
// 10 minutes' grace for late ones, and emits each hour's count once, when
// it closes. Views read the windows through the returned handle.
func Hourly(t *topology.Topology, readings topology.Stream[Reading]) (topology.Stream[HourlyCount], topology.Windowed[int]) {
	counts := topology.NewStream(t, "hourly-counts", codecs.JSON[HourlyCount]{})
	p := t.Processor("hourly")
	out := topology.Produce(p, counts)
	windows := topology.Aggregate(p, readings, topology.Tumbling(time.Hour).Grace(10*time.Minute),
		func() int { return 0 },
		func(_ string, _ Reading, n int) int { return n + 1 },
		codecs.JSON[int]{},
		topology.OnClose(func(c *topology.Context, sensor string, w topology.Window, n int) error {
			return out.Emit(c, sensor, HourlyCount{Start: w.Start, Count: n})
		}))
	return counts, windows
}
