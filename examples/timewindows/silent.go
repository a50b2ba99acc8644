package timewindows

import (
	"time"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
)

// Alert says a sensor went silent.
type Alert struct {
	LastSeen time.Time `json:"last_seen"`
}

// Silent alerts once when a sensor has sent nothing for 10 minutes of wall
// clock: each reading moves the sensor's timer 10 minutes ahead.
func Silent(t *topology.Topology, readings topology.Stream[Reading]) topology.Stream[Alert] {
	alerts := topology.NewStream(t, "alerts", codecs.JSON[Alert]{})
	p := t.Processor("silence")
	out := topology.Produce(p, alerts)
	silent := topology.Timer(p, "silent", codecs.JSON[time.Time]{}, func(c *topology.Context, sensor string, last time.Time) error {
		return out.Emit(c, sensor, Alert{LastSeen: last})
	})
	topology.Consume(p, readings, func(c *topology.Context, sensor string, _ Reading) error {
		return silent.AtWallTime(c, sensor, c.Now().Add(10*time.Minute), c.Now())
	})
	return alerts
}
