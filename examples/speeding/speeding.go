// Package speeding is the worked example of docs/adding-a-processor.md: a
// processor group that watches normalized GPS readings, counts each
// device's speeding readings in its group table, and emits an event for
// each one.
package speeding

import (
	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/topology"
)

// Event is one speeding reading of a device.
type Event struct {
	DeviceID uint64  `json:"device_id,string"`
	TimeMs   uint64  `json:"time_ms"`
	SpeedKmh float64 `json:"speed_kmh"`
	// Count is the device's speeding readings so far, this one included.
	Count int `json:"count"`
}

// Declare adds the "speeding" group to the pipeline: it reads
// telemetry.normalized, keeps a count per device and emits to
// telemetry.speeding. It returns the new stream and the group's table.
func Declare(p *processors.Pipeline, limitKmh float64) (topology.Stream[Event], topology.Table[int]) {
	t := p.Topology
	cfg := p.Config()
	// The output topic is keyed by device like every pipeline topic, with
	// the same partition count so that it could be joined later.
	out := topology.NewStream(t, "telemetry.speeding", codecs.JSON[Event]{},
		topology.WithPartitions(cfg.Partitions), topology.KeyedBy(processors.KeyDeviceID))

	g := t.Processor("speeding", topology.WithDescription("count and report GPS readings over the speed limit"))
	counts := topology.Persist(g, codecs.JSON[int]{},
		topology.WithPartitions(cfg.Partitions), topology.KeyedBy(processors.KeyDeviceID))
	emit := topology.Produce(g, out)

	topology.Consume(g, p.Normalized, func(c *topology.Context, key string, rs records.Readings) error {
		n, _, err := counts.Get(c)
		if err != nil {
			return err // the framework retries or dead-letters; nothing is lost
		}
		seen := n
		for _, r := range rs.Items {
			if r.Type != protocol.TypeGPS || r.SpeedKmh <= limitKmh {
				continue
			}
			n++
			if err := emit.Emit(c, key, Event{DeviceID: r.DeviceID, TimeMs: r.TimeMs, SpeedKmh: r.SpeedKmh, Count: n}); err != nil {
				return err
			}
		}
		if n == seen {
			return nil
		}
		return counts.Set(c, n)
	})
	return out, counts
}
