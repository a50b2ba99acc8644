package timewindows

import (
	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
)

// Sensor is a sensor's row in the sensors table: where it is.
type Sensor struct {
	Site string `json:"site"`
}

// Located is a reading with its sensor's site.
type Located struct {
	Reading
	Site string `json:"site"`
}

// Latest keeps each key's latest row of rows in the table of a group
// named name, for other groups to join or look up.
func Latest[V any](t *topology.Topology, name string, rows topology.Stream[V], codec topology.Codec[V]) topology.Table[V] {
	p := t.Processor(name)
	table := topology.Persist(p, codec)
	topology.Consume(p, rows, func(c *topology.Context, _ string, v V) error { return table.Set(c, v) })
	return table
}

// Locate joins each reading with its sensor's row, by the reading's key,
// and emits the pair to "located"; a sensor the table lacks emits nothing.
func Locate(t *topology.Topology, readings topology.Stream[Reading], sensors topology.Table[Sensor]) topology.Stream[Located] {
	return topology.Enrich(t.Processor("locate"), readings, sensors, "located", codecs.JSON[Located]{},
		func(_ string, r Reading, s Sensor) Located { return Located{Reading: r, Site: s.Site} })
}
