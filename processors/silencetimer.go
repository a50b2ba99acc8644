package processors

import (
	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/topology"
)

// silenceTimer is the device-state group's silent-device wiring (see
// silence.go): a wall-clock timer per device, armed at the newest receive
// time plus Config.Silence, whose value is the receive time it was armed
// for. A timer callback cannot read the group table, so it loops that
// time back to the device's key, where SilenceDue decides.
type silenceTimer struct {
	p      *Pipeline
	timers topology.Timers[int64]
	loop   topology.Loopback[int64]
	alerts topology.Output[records.Alert]
}

// declareSilence adds the silence timer to the device-state group g.
func (p *Pipeline) declareSilence(g *topology.Processor, alerts topology.Output[records.Alert]) *silenceTimer {
	s := &silenceTimer{p: p, alerts: alerts}
	s.loop = topology.Loop(g, codecs.JSON[int64]{}, s.due)
	s.timers = topology.Timer(g, "silence", codecs.JSON[int64]{}, func(c *topology.Context, key string, armedMs int64) error {
		return s.loop.Send(c, key, armedMs)
	})
	return s
}

// received applies a package's receive time to st (not yet written): it
// raises device_back when the device was silent and moves the device's
// timer to the new due time.
func (s *silenceTimer) received(c *topology.Context, key string, st *records.DeviceState, receivedMs int64) error {
	armed := st.ReceivedMs
	back, due := NoteReceived(st, receivedMs, s.p.cfg.Silence)
	if back != nil {
		if err := s.alerts.Emit(c, key, *back); err != nil {
			return err
		}
	}
	if due.IsZero() || (st.ReceivedMs == armed && back == nil) {
		return nil // no receive time, or the timer is armed for it already
	}
	return s.timers.AtWallTime(c, key, due, st.ReceivedMs)
}

// due handles a fired timer's loop record: device_silent when the device
// has sent nothing since the receive time the timer was armed for.
func (s *silenceTimer) due(c *topology.Context, key string, armedMs int64) error {
	st, ok, err := s.p.DeviceState.Get(c)
	if err != nil || !ok {
		return err
	}
	silent, again := SilenceDue(&st, armedMs, c.Now(), s.p.cfg.Silence)
	if !again.IsZero() {
		return s.timers.AtWallTime(c, key, again, armedMs)
	}
	if silent == nil {
		return nil
	}
	if err := s.alerts.Emit(c, key, *silent); err != nil {
		return err
	}
	return s.p.DeviceState.Set(c, st)
}
