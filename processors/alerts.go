package processors

import (
	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/topology"
)

// The alerts group raises alerts from telemetry.normalized: events of high
// severity and engine coolant over the threshold.

// descAlerts describes the alerts stage, on its own group or fused.
const descAlerts = "alerts: events of high severity and engine coolant over the threshold"

// declareAlerts declares the alerts group of an unfused pipeline. It takes
// the replays aimed at device-state too: a dead letter of the fused group
// names device-state, and once the stages run apart its alerts must not be
// skipped as meant for another group (as decode takes dedupe's replays).
func (p *Pipeline) declareAlerts() {
	g := p.Topology.Processor(GroupAlerts, topology.WithDescription(descAlerts), topology.TakesReplaysFor(GroupDeviceState))
	out := topology.Produce(g, p.Alerts)
	topology.Consume(g, p.Normalized, func(c *topology.Context, key string, rs records.Readings) error {
		return p.emitAlerts(c, out, key, &rs)
	})
}

// emitAlerts emits the alerts of one Readings record.
func (p *Pipeline) emitAlerts(c *topology.Context, out topology.Output[records.Alert], key string, rs *records.Readings) error {
	for _, a := range p.alertsOf(rs) {
		if err := out.Emit(c, key, a); err != nil {
			return err
		}
	}
	return nil
}

func (p *Pipeline) alertsOf(rs *records.Readings) []records.Alert {
	var out []records.Alert
	for _, r := range rs.Items {
		switch {
		case r.Type == protocol.TypeEvent && r.Severity >= p.cfg.AlertSeverity:
			out = append(out, records.Alert{DeviceID: r.DeviceID, TimeMs: r.TimeMs, ContentCRC: r.ContentCRC,
				Kind: records.AlertEvent, EventCode: uint8(r.EventCode), Severity: uint8(r.Severity)})
		case r.Type == protocol.TypeEngine && r.CoolantC > p.cfg.CoolantAlertC:
			out = append(out, records.Alert{DeviceID: r.DeviceID, TimeMs: r.TimeMs, ContentCRC: r.ContentCRC,
				Kind: records.AlertCoolant, CoolantC: r.CoolantC})
		}
	}
	return out
}
