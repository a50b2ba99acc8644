// Package speeding is the worked example of docs/adding-a-processor.md: a
// processor group that watches normalized GPS readings, counts each
// device's speeding readings in its group table, and emits an event for
// each one. Listing Group() in a registry adds it to every command.
package speeding

import (
	"github.com/watershed-io/watershed/assembly"
	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/settings"
	"github.com/watershed-io/watershed/topology"
)

// Topic is the group's output, before the prefix.
const Topic = "telemetry.speeding"

// Event is one speeding reading of a device.
type Event struct {
	DeviceID uint64  `json:"device_id,string"`
	TimeMs   uint64  `json:"time_ms"`
	SpeedKmh float64 `json:"speed_kmh"`
	// Count is the device's speeding readings so far, this one included.
	Count int `json:"count"`
}

// Group is the registration of the "speeding" group: it reads
// telemetry.normalized, keeps a count per device and emits to
// telemetry.speeding. Its one setting is --speeding-limit-kmh.
func Group() assembly.Group {
	limit := settings.Float("speeding-limit-kmh", 130, "speed over which a GPS reading is speeding, km/h")
	return assembly.Group{
		Name:     "speeding",
		Settings: []settings.Setting{limit},
		Declare: func(d *assembly.Declaration) error {
			_, _, err := Declare(d, limit.Get(d.Settings))
			return err
		},
	}
}

// Declare declares the group with its speed limit and returns its output
// stream and its table.
func Declare(d *assembly.Declaration, limitKmh float64) (topology.Stream[Event], topology.Table[int], error) {
	// The pipeline's stream, by name; a wrong name or value type is an
	// error here, before anything runs.
	normalized, err := assembly.Stream[records.Readings](d, processors.TopicNormalized)
	if err != nil {
		return topology.Stream[Event]{}, topology.Table[int]{}, err
	}
	// Keyed by device like every pipeline topic, with the same partition
	// count, so that it could be joined later.
	out := assembly.NewStream(d, Topic, codecs.JSON[Event]{})

	g := d.Processor(topology.WithDescription("count and report GPS readings over the speed limit"))
	counts := assembly.Persist(d, g, codecs.JSON[int]{})
	emit := topology.Produce(g, out)

	topology.Consume(g, normalized, func(c *topology.Context, key string, rs records.Readings) error {
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
	return out, counts, nil
}
