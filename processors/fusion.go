package processors

import (
	"fmt"
	"strings"

	"github.com/watershed-io/watershed/topology"
)

// Fusion is a set of stage fusions. A fused stage runs inside the handler
// of the group after it instead of in a group of its own, so the topic
// between them is neither produced nor consumed: fewer record operations
// per package. Every topic is keyed by device, so the fused group sees the
// same keys in the same partitions as the two groups did.
//
// Group names that own tables stay: dedupe keeps dedupe-table and
// device-state keeps device-state-table, so the views and the tables'
// local copies are unaffected by a change of fusion. The sink is never
// fused: an outage of the store must not stall the device states.
type Fusion uint8

const (
	// FuseDecode runs decode and validation inside the dedupe group, which
	// then consumes telemetry.raw; telemetry.decoded is not declared. The
	// decoder's dead letters name the dedupe group as their stage.
	FuseDecode Fusion = 1 << iota
	// FuseAlerts runs the alerts stage inside the device-state group,
	// which then also emits telemetry.alerts: one consumer of
	// telemetry.normalized fewer.
	FuseAlerts
)

// FuseNone runs every stage in its own group; FuseAll fuses all that can be.
const (
	FuseNone Fusion = 0
	FuseAll         = FuseDecode | FuseAlerts
)

// fusionNames names each fusion by the stage that loses its own group.
var fusionNames = []struct {
	f    Fusion
	name string
}{{FuseDecode, GroupDecode}, {FuseAlerts, GroupAlerts}}

// Has reports whether every fusion of x is in f.
func (f Fusion) Has(x Fusion) bool { return f&x == x }

// String returns "none" or the fused stages, comma-separated.
func (f Fusion) String() string {
	var names []string
	for _, n := range fusionNames {
		if f.Has(n.f) {
			names = append(names, n.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// ParseFusion parses "none" (or ""), "all", or a comma-separated list of
// the stages to fuse into the group after them: decode (into dedupe) and
// alerts (into device-state).
func ParseFusion(s string) (Fusion, error) {
	var f Fusion
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		switch part {
		case "", "none":
			continue
		case "all":
			f |= FuseAll
			continue
		}
		found := false
		for _, n := range fusionNames {
			if part == n.name {
				f |= n.f
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("processors: unknown fusion %q (want none, all, %s or %s)", part, GroupDecode, GroupAlerts)
		}
	}
	return f, nil
}

// MarshalText implements encoding.TextMarshaler, for flags and configs.
func (f Fusion) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseFusion.
func (f *Fusion) UnmarshalText(b []byte) error {
	v, err := ParseFusion(string(b))
	if err != nil {
		return err
	}
	*f = v
	return nil
}

// stageGroup declares the group of stage name. Fused, it runs stage inner
// before its own: its description names both, and it takes the replays
// of inner's dead letters, which were aimed at inner's group.
func (p *Pipeline) stageGroup(name, desc string, fused bool, inner, innerDesc string) *topology.Processor {
	if !fused {
		return p.Topology.Processor(name, topology.WithDescription(desc))
	}
	return p.Topology.Processor(name,
		topology.WithDescription(fmt.Sprintf("fused stages %s+%s: %s; then %s", inner, name, innerDesc, desc)),
		topology.TakesReplaysFor(inner))
}
