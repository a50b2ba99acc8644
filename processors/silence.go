package processors

import (
	"time"

	"github.com/watershed-io/watershed/codecs/records"
)

// Silent devices, the decisions: a device the edge has received nothing
// from for the silence threshold (wall clock, against the edge's receive
// time of its packages) gets one device_silent alert, and one device_back
// when it sends again; the device state counts both. The device-state
// group calls NoteReceived for every package it applies and SilenceDue
// from the device's wall-clock timer. Both are pure and count each alert
// once in the state. A decision's state write may land without its alert
// (two topics, no transaction), and the record is then replayed: the state
// names the input record that raised each kind's latest alert
// (DeviceState.Back, Silenced), and a replay of exactly that record raises
// the same alert again (BackAgain, SilentAgain), whatever came since. A
// timer firing again while the device is silent also raises the same
// device_silent again. Alerts are so at least once; a repeat is equal to
// the first.
//
// Wiring them (silencetimer.go): the record callback calls NoteReceived
// and arms the device's wall-clock timer at the due time it returns when
// none is pending; a timer callback cannot read the group table, so it
// loops to the device's key, and the loop handler calls SilenceDue with
// the state's newest receive time and Context.Now: device_silent, or the
// timer moved to the newest due time when the device sent since.

// DefaultSilence is the default silence threshold.
const DefaultSilence = 10 * time.Minute

// NoteReceived applies the edge's receive time of one of the device's
// packages (records.Readings.ReceivedMs) to st. It returns the
// device_back alert to raise when the device was silent, and when the
// device's silence timer is due: the newest receive time plus threshold
// (zero when the package carries no receive time and none is known).
//
// A package received before a newer one (records of one device may be
// handled out of receive order) does not move the due time back; one that
// ends a silence raises device_back even so, since device_silent is out.
func NoteReceived(st *records.DeviceState, receivedMs int64, threshold time.Duration) (back *records.Alert, due time.Time) {
	since := st.ReceivedMs
	st.ReceivedMs = max(st.ReceivedMs, receivedMs)
	if st.Silent {
		st.Silent = false
		st.BackAlerts++
		back = &records.Alert{DeviceID: st.DeviceID, Kind: records.AlertBack, TimeMs: nonNegative(receivedMs), SinceMs: nonNegative(since)}
	}
	return back, silenceDue(st, threshold)
}

// SilenceDue decides at wall-clock time now, when the device's silence
// timer armed for receive time armedMs fires, whether the device is
// silent. It returns the device_silent alert to raise, or, when the timer
// fired early, when it is due instead. A timer armed for an older receive
// time than the state's raises nothing and returns no time: the newer
// package's record armed the timer again (as it does for a device already
// silent or one never heard of).
//
// A device already silent since armedMs gets the same alert again, the
// state unchanged: the firing is a replay whose state write was
// acknowledged but whose alert was not (the state and the alert go to two
// topics without a transaction), and the alert must not be lost. Alerts
// are thereby raised at least once.
func SilenceDue(st *records.DeviceState, armedMs int64, now time.Time, threshold time.Duration) (silent *records.Alert, reschedule time.Time) {
	if st.ReceivedMs == 0 || armedMs != st.ReceivedMs {
		return nil, time.Time{}
	}
	due := silenceDue(st, threshold)
	alert := &records.Alert{DeviceID: st.DeviceID, Kind: records.AlertSilent, TimeMs: uint64(due.UnixMilli()), SinceMs: nonNegative(st.ReceivedMs)}
	if st.Silent {
		return alert, time.Time{}
	}
	if now.Before(due) {
		return nil, due
	}
	st.Silent = true
	st.SilentAlerts++
	return alert, time.Time{}
}

// BackAgain returns the device_back alert that the input record in, a
// package received at receivedMs, raised when it is the record that ended
// the device's latest silence (DeviceState.Back), nil otherwise.
func BackAgain(st *records.DeviceState, in records.InputOffset, receivedMs int64) *records.Alert {
	if st.Back.Source == 0 || st.Back != in {
		return nil
	}
	return &records.Alert{DeviceID: st.DeviceID, Kind: records.AlertBack, TimeMs: nonNegative(receivedMs), SinceMs: nonNegative(st.BackSinceMs)}
}

// SilentAgain returns the device_silent alert that the input record in (a
// fired timer's loop record) raised when it is the record that raised the
// device's latest one (DeviceState.Silenced), nil otherwise.
func SilentAgain(st *records.DeviceState, in records.InputOffset) *records.Alert {
	if st.Silenced.Source == 0 || st.Silenced != in {
		return nil
	}
	return &records.Alert{DeviceID: st.DeviceID, Kind: records.AlertSilent, TimeMs: nonNegative(st.SilentAtMs), SinceMs: nonNegative(st.SilentSinceMs)}
}

// silenceDue is when st's device becomes silent, zero without a receive
// time.
func silenceDue(st *records.DeviceState, threshold time.Duration) time.Time {
	if st.ReceivedMs <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(st.ReceivedMs).Add(threshold)
}

func nonNegative(ms int64) uint64 { return uint64(max(ms, 0)) }
