package processors

import (
	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/topology"
)

// silenceTimer is the device-state group's silent-device wiring (see
// silence.go): one wall-clock timer per device, due at the newest receive
// time plus Config.Silence at the latest. It is armed lazily: a package
// arms it only when none is pending (the device's first package, one that
// ends a silence, or after a crash lost the schedule), and a timer that
// fires while the device has sent since is moved to the newest due time.
// So an active device costs a timer read per package and one firing per
// threshold, not a timer write per package. A timer callback cannot read
// the group table, so it loops to the device's key, where SilenceDue
// decides from the state.
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
// raises device_back when the device was silent and arms the device's
// timer when none is pending.
func (s *silenceTimer) received(c *topology.Context, key string, st *records.DeviceState, receivedMs int64) error {
	back, due := NoteReceived(st, receivedMs, s.p.cfg.Silence)
	if back != nil {
		st.Back, st.BackSinceMs = inputOf(c), int64(back.SinceMs)
		if err := s.alerts.Emit(c, key, *back); err != nil {
			return err
		}
	}
	if due.IsZero() {
		return nil // no receive time known
	}
	if _, _, pending, err := s.timers.Scheduled(c, key); err != nil || pending {
		return err // a pending timer is due no later than due: it moves on when it fires
	}
	return s.timers.AtWallTime(c, key, due, st.ReceivedMs)
}

// backAgain handles a package record replayed (applied already): the one
// that ended the device's latest silence raises its device_back again.
func (s *silenceTimer) backAgain(c *topology.Context, key string, st *records.DeviceState, receivedMs int64) error {
	if back := BackAgain(st, inputOf(c), receivedMs); back != nil {
		return s.alerts.Emit(c, key, *back)
	}
	return nil
}

// due handles a fired timer's loop record: device_silent when the device
// has sent nothing for the threshold, else the timer moved to the newest
// receive time's due time.
func (s *silenceTimer) due(c *topology.Context, key string, _ int64) error {
	st, ok, err := s.p.DeviceState.Get(c)
	if err != nil || !ok {
		return err
	}
	in := inputOf(c)
	// The firing that raised the latest device_silent raises it again,
	// even when a package has ended that silence since.
	if silent := SilentAgain(&st, in); silent != nil {
		return s.alerts.Emit(c, key, *silent)
	}
	raised := st.SilentAlerts
	silent, again := SilenceDue(&st, st.ReceivedMs, c.Now(), s.p.cfg.Silence)
	if !again.IsZero() {
		return s.timers.AtWallTime(c, key, again, st.ReceivedMs)
	}
	if silent == nil {
		return nil
	}
	if st.SilentAlerts != raised {
		st.Silenced, st.SilentSinceMs, st.SilentAtMs = in, int64(silent.SinceMs), int64(silent.TimeMs)
	}
	if err := s.alerts.Emit(c, key, *silent); err != nil {
		return err
	}
	return s.p.DeviceState.Set(c, st)
}
